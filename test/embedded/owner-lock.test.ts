// Who owns a data folder's local servers (embedded/owner-lock.ts): a live owner is told from a
// claim left behind by its start time, not by its process name — Node 24 names its main thread
// "MainThread" and any process.title renames it, and the old check by name ("node") then took a
// live start's PostgreSQL and Redis over (shutdown.test.ts, on Node 24).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { claimDataDir, DataDirInUseError } from '../../src/embedded/owner-lock.ts';

const children: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'bg-owner-'));
  dirs.push(d);
  return d;
};

/** Another process that claims `dir` as a start would, under the process title given. */
async function ownerProcess(dir: string, title: string): Promise<ChildProcess> {
  const code =
    `process.title = ${JSON.stringify(title)};` +
    `const { claimDataDir } = await import(${JSON.stringify(join(process.cwd(), 'src/embedded/owner-lock.ts'))});` +
    `claimDataDir(${JSON.stringify(dir)}); console.log('claimed'); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  expect(line.toString()).toContain('claimed');
  return child;
}

/** A process that is alive and is not a Blastgate start (a pid reused after a reboot). */
function stranger(): ChildProcess {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  children.push(child);
  return child;
}

describe('claimDataDir', () => {
  it.each(['MainThread', 'node', 'blastgate-api'])(
    'refuses while the owner lives, whatever its process is called (%s)',
    async (title) => {
      const dir = tempDir();
      const owner = await ownerProcess(dir, title);
      expect(() => claimDataDir(dir)).toThrow(DataDirInUseError);
      expect(() => claimDataDir(dir)).toThrow(`another Blastgate (pid ${owner.pid})`);
      expect(readFileSync(join(dir, 'owner.pid'), 'utf8')).toMatch(new RegExp(`^${owner.pid}\\b`));
    },
  );

  it('takes over the claim of an owner that is gone', async () => {
    const dir = tempDir();
    const owner = await ownerProcess(dir, 'node');
    owner.kill('SIGKILL');
    await once(owner, 'exit');
    const release = claimDataDir(dir);
    expect(readFileSync(join(dir, 'owner.pid'), 'utf8')).toMatch(new RegExp(`^${process.pid}\\b`));
    release();
  });

  it('takes over a claim whose pid now belongs to another process (it started later)', async () => {
    const dir = tempDir();
    const other = stranger();
    // The claim of a start long gone, whose pid was given to `sleep` since.
    writeFileSync(join(dir, 'owner.pid'), `${other.pid} 1\n`);
    const release = claimDataDir(dir);
    expect(readFileSync(join(dir, 'owner.pid'), 'utf8')).toMatch(new RegExp(`^${process.pid}\\b`));
    release();
  });

  it("reads an older version's claim (a pid alone) as before: a live node process owns it", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'owner.pid'), `${stranger().pid}\n`);
    claimDataDir(dir)();
    const node = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    children.push(node);
    await once(node, 'spawn');
    writeFileSync(join(dir, 'owner.pid'), `${node.pid}\n`);
    expect(() => claimDataDir(dir)).toThrow(`another Blastgate (pid ${node.pid})`);
  });
});
