// Project-owned PostgreSQL 15 and Redis 7 for the zero-configuration start and the test suite.
// They live under a data folder of ours, listen on 127.0.0.1 only, and are installed with apt-get
// when missing (the project must bring what it needs onto a fresh machine).
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';

export interface LocalServices {
  databaseUrl: string;
  redisUrl: string;
  stop(): void;
}

export interface LocalServicesOptions {
  dir: string;
  pgPort?: number;
  redisPort?: number;
  database?: string;
  log?: (msg: string) => void;
}

const PG_DIRS = ['/usr/lib/postgresql/15/bin', '/usr/local/bin', '/usr/bin'];
const isRoot = () => process.getuid?.() === 0;

function which(cmd: string, extra: string[] = []): string | undefined {
  for (const d of [...extra, ...(process.env.PATH ?? '').split(':')]) {
    const p = join(d, cmd);
    if (d && existsSync(p)) return p;
  }
  return undefined;
}

function aptInstall(pkgs: string[], log: (m: string) => void): void {
  if (!isRoot()) throw new Error(`missing ${pkgs.join(', ')}: install them (apt-get install -y ${pkgs.join(' ')})`);
  log(`installing ${pkgs.join(', ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let r = spawnSync('apt-get', ['install', '-y', '-qq', ...pkgs], { stdio: 'inherit', env });
  if (r.status !== 0) {
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    r = spawnSync('apt-get', ['install', '-y', '-qq', ...pkgs], { stdio: 'inherit', env });
  }
  if (r.status !== 0) throw new Error(`apt-get install ${pkgs.join(' ')} failed`);
}

export function ensureBinaries(log: (m: string) => void = console.log) {
  if (!['initdb', 'pg_ctl', 'postgres'].every((c) => which(c, PG_DIRS))) aptInstall(['postgresql-15'], log);
  if (!which('redis-server')) aptInstall(['redis-server'], log);
  return {
    initdb: which('initdb', PG_DIRS)!,
    pgCtl: which('pg_ctl', PG_DIRS)!,
    redisServer: which('redis-server')!,
  };
}

/** A free TCP port on 127.0.0.1 (the kernel picks it). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? res(addr.port) : rej(new Error('no port'))));
    });
  });
}

// initdb and postgres refuse to run as root; the Debian package creates a `postgres` user.
function asPostgres(cmd: string, args: string[]) {
  const full = isRoot() ? (['runuser', ['-u', 'postgres', '--', cmd, ...args]] as const) : ([cmd, args] as const);
  const r = spawnSync(full[0], [...full[1]], { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

function ownByPostgres(path: string) {
  if (!isRoot()) return;
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  chownSync(path, uid, gid);
}

export async function startLocalServices(opts: LocalServicesOptions): Promise<LocalServices> {
  const log = opts.log ?? ((m: string) => console.log(m));
  const bins = ensureBinaries(log);
  const dir = resolve(opts.dir);
  const pgData = join(dir, 'pg');
  const sockDir = join(dir, 'run');
  const redisDir = join(dir, 'redis');
  for (const d of [dir, sockDir, redisDir]) mkdirSync(d, { recursive: true });
  ownByPostgres(dir);
  ownByPostgres(sockDir);

  if (!existsSync(join(pgData, 'PG_VERSION'))) {
    mkdirSync(pgData, { recursive: true, mode: 0o700 });
    ownByPostgres(pgData);
    const r = asPostgres(bins.initdb, [
      '-D',
      pgData,
      '-U',
      'postgres',
      '--auth=trust',
      '-E',
      'UTF8',
      '--locale=C.UTF-8',
    ]);
    if (!r.ok) throw new Error(`initdb failed:\n${r.out}`);
  }
  const pgPort = opts.pgPort ?? (await freePort());
  const status = asPostgres(bins.pgCtl, ['-D', pgData, 'status']);
  let ownPg = false;
  if (!status.ok) {
    const conf = `-p ${pgPort} -h 127.0.0.1 -k ${sockDir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=256MB`;
    const r = asPostgres(bins.pgCtl, [
      '-D',
      pgData,
      '-l',
      join(pgData, 'server.log'),
      '-o',
      conf,
      '-w',
      '-t',
      '60',
      'start',
    ]);
    if (!r.ok) throw new Error(`PostgreSQL did not start:\n${r.out}\n${tail(join(pgData, 'server.log'))}`);
    ownPg = true;
  }
  const actualPgPort = readPostmasterPort(pgData) ?? pgPort;
  const database = opts.database ?? 'blastgate';
  const root = `postgres://postgres@127.0.0.1:${actualPgPort}`;
  const pgMod = await import('pg');
  const admin = new pgMod.default.Client({ connectionString: `${root}/postgres` });
  await admin.connect();
  const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
  if (exists.rowCount === 0) await admin.query(`CREATE DATABASE "${database}"`);
  await admin.end();

  const redisPort = opts.redisPort ?? (await freePort());
  const pidFile = join(redisDir, 'redis.pid');
  let ownRedis = false;
  const redisAlive = existsSync(pidFile) && alive(Number(readFileSync(pidFile, 'utf8')));
  let actualRedisPort = redisPort;
  if (redisAlive) {
    actualRedisPort = Number(readFileSync(join(redisDir, 'port'), 'utf8'));
  } else {
    const r = spawnSync(
      bins.redisServer,
      [
        '--port',
        String(redisPort),
        '--bind',
        '127.0.0.1',
        '--dir',
        redisDir,
        '--appendonly',
        'yes',
        // BullMQ is only correct when Redis never evicts keys.
        '--maxmemory-policy',
        'noeviction',
        '--daemonize',
        'yes',
        '--pidfile',
        pidFile,
        '--logfile',
        join(redisDir, 'redis.log'),
        '--save',
        '',
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`redis-server did not start: ${r.stderr}`);
    writeFileSync(join(redisDir, 'port'), String(redisPort));
    await waitFor(() => existsSync(pidFile), 10_000, 'redis-server pid file');
    ownRedis = true;
  }
  return {
    databaseUrl: `${root}/${database}`,
    redisUrl: `redis://127.0.0.1:${actualRedisPort}`,
    stop() {
      if (ownRedis && existsSync(pidFile)) {
        const pid = Number(readFileSync(pidFile, 'utf8'));
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          /* already gone */
        }
      }
      if (ownPg) asPostgres(bins.pgCtl, ['-D', pgData, '-m', 'fast', '-w', 'stop']);
    },
  };
}

function readPostmasterPort(pgData: string): number | undefined {
  const f = join(pgData, 'postmaster.pid');
  if (!existsSync(f)) return undefined;
  const port = Number(readFileSync(f, 'utf8').split('\n')[3]);
  return Number.isInteger(port) && port > 0 ? port : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '';
  }
}

async function waitFor(check: () => boolean, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
