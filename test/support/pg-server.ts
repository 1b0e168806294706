// A PostgreSQL 15 server of a test's own (the suite's shared one must never be restarted under other
// test files): initdb in a temp dir, a free port on 127.0.0.1, migrated, so a test can restart it
// the hard way (`pg_ctl restart -m immediate`: every session is cut, as in a crash) mid-operation.
// fsync off for speed: the data is thrown away, and the restart is an immediate stop of the server,
// not a power cut of the machine. A process 'exit' hook stops it if the test process ends first.
import { spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.ts';
import { ensureBinaries, freePort } from '../../src/embedded/local-services.ts';

export interface OwnPostgres {
  /** A migrated database on this server. */
  readonly url: string;
  /** Cuts every session at once and starts again on the same port (pg_ctl restart -m immediate). */
  restart(): void;
  destroy(): void;
}

const isRoot = () => process.getuid?.() === 0;

function run(cmd: string, args: string[]) {
  const full = isRoot() ? (['runuser', ['-u', 'postgres', '--', cmd, ...args]] as const) : ([cmd, args] as const);
  const r = spawnSync(full[0], [...full[1]], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
}

function chownToPostgres(path: string) {
  if (!isRoot()) return;
  const id = (flag: string) => Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim());
  chownSync(path, id('-u'), id('-g'));
}

export async function startOwnPostgres(): Promise<OwnPostgres> {
  const bins = ensureBinaries(() => undefined);
  const pgCtl = bins.pgCtl;
  const dir = mkdtempSync(join(tmpdir(), 'blastgate-ownpg-'));
  const data = join(dir, 'data');
  const sock = join(dir, 'run');
  mkdirSync(data, { mode: 0o700 });
  mkdirSync(sock);
  for (const p of [dir, data, sock]) chownToPostgres(p);
  run(bins.initdb, ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8']);
  const port = await freePort();
  // fsync off is safe here (the machine does not crash, the server does); synchronous_commit must
  // stay on: with it off, an immediate stop loses transactions it had already acknowledged.
  const opts = `-p ${port} -h 127.0.0.1 -k ${sock} -c fsync=off -c full_page_writes=off`;
  run(pgCtl, ['-D', data, '-l', join(data, 'server.log'), '-o', opts, '-w', '-t', '60', 'start']);
  let running = true;
  const stop = () => {
    if (!running) return;
    running = false;
    spawnSync(isRoot() ? 'runuser' : pgCtl, [
      ...(isRoot() ? ['-u', 'postgres', '--', pgCtl] : []),
      '-D',
      data,
      '-m',
      'immediate',
      '-w',
      'stop',
    ]);
  };
  process.once('exit', stop);

  const root = `postgres://postgres@127.0.0.1:${port}`;
  const admin = new pg.Client({ connectionString: `${root}/postgres` });
  await admin.connect();
  await admin.query('CREATE DATABASE blastgate');
  await admin.end();
  const url = `${root}/blastgate`;
  await migrate(url);
  return {
    url,
    restart() {
      // `restart` reuses the server options (postmaster.opts), not the log file: without -l the new
      // server would keep this process's pipe open and spawnSync would never return.
      run(pgCtl, ['-D', data, '-l', join(data, 'server.log'), '-m', 'immediate', '-w', '-t', '60', 'restart']);
    },
    destroy() {
      stop();
      process.removeListener('exit', stop);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
