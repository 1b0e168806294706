// The project-owned PostgreSQL is the source of truth of the ledger: started with defaults (what
// `npm start` does) it must keep committed work across a power cut. Turning that off is an
// explicit, logged choice for throw-away data (the test suite, benchmarks).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startLocalServices, type LocalServices } from '../../src/embedded/local-services.ts';
import { cleanUp, durabilitySettings, pidAlive, postmasterPid, tempDataDir } from './helpers.ts';

// IDs compare bytewise (src/db/collation.ts); case and character classes stay Unicode's.
const LOCALE = { lc_collate: 'C', lc_ctype: 'C.UTF-8' };
const ON = { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on', ...LOCALE };
const OFF = { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', ...LOCALE };

describe('embedded PostgreSQL durability', () => {
  const dirs: string[] = [];
  const started: LocalServices[] = [];
  const newDir = () => {
    const d = tempDataDir();
    dirs.push(d);
    return d;
  };
  afterEach(async () => {
    for (const s of started.splice(0)) s.stop();
    for (const d of dirs.splice(0)) await cleanUp(d);
  });

  it('started with defaults, runs with fsync, synchronous_commit and full_page_writes on', async () => {
    const logs: string[] = [];
    const s = await startLocalServices({ dir: newDir(), log: (m) => logs.push(m) });
    started.push(s);
    expect(s.durability).toBe('durable');
    expect(await durabilitySettings(s.databaseUrl)).toEqual(ON);
    expect(logs.join('\n')).toMatch(/local PostgreSQL is up: .*durability "durable"/);
    expect(logs.join('\n')).not.toMatch(/fast/);

    const report = s.stop();
    expect(report).toEqual({
      ok: true,
      message: `stopped the local Redis (pid ${s.pids.redis}) and PostgreSQL (pid ${s.pids.postgres})`,
    });
    expect(pidAlive(s.pids.postgres)).toBe(false);
    expect(pidAlive(s.pids.redis)).toBe(false);
  });

  it('stops the PostgreSQL of its data folder even when it was restarted under it (a new pid), and says so truly', async () => {
    const dir = newDir();
    const s = await startLocalServices({ dir, durability: 'fast', log: () => undefined });
    started.push(s);
    const first = s.pids.postgres;
    // Someone restarts it the hard way: same data folder, same port, a new postmaster.
    const pgCtl = [
      'pg_ctl',
      '-D',
      join(dir, 'pg'),
      '-l',
      join(dir, 'pg', 'server.log'),
      '-m',
      'immediate',
      '-w',
      'restart',
    ];
    const asRoot = process.getuid?.() === 0; // initdb and postgres refuse to run as root
    const r = asRoot
      ? spawnSync('runuser', ['-u', 'postgres', '--', ...pgCtl], { encoding: 'utf8' })
      : spawnSync(pgCtl[0]!, pgCtl.slice(1), { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const now = postmasterPid(dir)!;
    expect(now).not.toBe(first);
    expect(pidAlive(now)).toBe(true);
    const report = s.stop();
    expect(report.ok).toBe(true);
    expect(report.message).toContain(`PostgreSQL (pid ${now})`);
    expect(pidAlive(now)).toBe(false);
  });

  it('durability "fast" turns the three off only when asked, and says so', async () => {
    const logs: string[] = [];
    const s = await startLocalServices({ dir: newDir(), durability: 'fast', log: (m) => logs.push(m) });
    started.push(s);
    expect(await durabilitySettings(s.databaseUrl)).toEqual(OFF);
    expect(logs.join('\n')).toMatch(
      /durability "fast" \(fsync, synchronous_commit and full_page_writes off\): committed data can be lost/,
    );
  });

  it('a default start that finds a fast PostgreSQL left running restarts it durable and owns it', async () => {
    const dir = newDir();
    const left = await startLocalServices({ dir, durability: 'fast', log: () => undefined });
    // `left` is never stopped: its servers stay running, as after a killed start.
    const logs: string[] = [];
    const s = await startLocalServices({ dir, log: (m) => logs.push(m) });
    started.push(s);
    const out = logs.join('\n');
    expect(out).toMatch(
      new RegExp(
        `found a PostgreSQL left running by an earlier start \\(pid ${left.pids.postgres}.*fsync=off.*stopping it to start it again with durability "durable"`,
      ),
    );
    expect(out).toMatch(
      new RegExp(`found a Redis left running by an earlier start \\(pid ${left.pids.redis}.*takes it over`),
    );
    expect(pidAlive(left.pids.postgres)).toBe(false);
    expect(s.adopted).toEqual({ postgres: false, redis: true });
    expect(s.pids.redis).toBe(left.pids.redis);
    expect(await durabilitySettings(s.databaseUrl)).toEqual(ON);

    expect(s.stop().ok).toBe(true);
    expect(pidAlive(s.pids.postgres)).toBe(false);
    expect(pidAlive(s.pids.redis)).toBe(false);
  });
});
