// One Blastgate start per data folder. The local PostgreSQL and Redis of a folder belong to the
// start that runs them: a second `npm start` in the same checkout used to find them running, take
// them over as if an earlier start had left them behind, and stop them when it exited, taking
// the database and the queue from under the first one (found by a new-user trial). The folder
// now names the process that owns its servers (its pid and start time); a start finds that owner
// alive and refuses, naming it, or finds it gone (killed, crashed) and takes over as before.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRunning, startTicks } from './procs.ts';

const OWNER_FILE = 'owner.pid';

export class DataDirInUseError extends Error {
  constructor(
    readonly dir: string,
    readonly ownerPid: number,
  ) {
    super(
      `Blastgate cannot start: another Blastgate (pid ${ownerPid}) runs the local PostgreSQL and Redis in ${dir}. ` +
        'Stop it first (Ctrl-C where it runs), or give this one its own folder with BLASTGATE_DATA_DIR, or point it at ' +
        'the same services with DATABASE_URL and REDIS_URL (several API processes may share them; they must not share a start)',
    );
    this.name = 'DataDirInUseError';
  }
}

/**
 * Makes this process the owner of `dir`'s local servers, or throws DataDirInUseError when another
 * live Blastgate process is. Returns the release, which forgets the claim only while it is ours.
 */
export function claimDataDir(dir: string): () => void {
  const file = join(dir, OWNER_FILE);
  const release = () => {
    if (ownerOf(file) === process.pid) rmSync(file, { force: true });
  };
  const started = startTicks(process.pid);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      // `wx`: of two starts at the same moment, one creates the file and the other reads its owner.
      writeFileSync(file, `${process.pid}${started ? ` ${started}` : ''}\n`, { flag: 'wx' });
      return release;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = readClaim(file);
    if (owner?.pid === process.pid) return release;
    if (owner && ownerLives(owner)) throw new DataDirInUseError(dir, owner.pid);
    rmSync(file, { force: true });
  }
  throw new Error(`could not claim ${dir} for this start (${file} keeps changing)`);
}

interface Claim {
  pid: number;
  /** The owner's start time (startTicks); absent in the claims of older versions and without /proc. */
  started?: string;
}

/**
 * The process that wrote the claim still runs: the same pid with the same start time, whatever
 * it is called now. A name check ("a node process under that pid") took a live start's servers
 * over on Node 24, which names its main thread "MainThread", and under any process.title. A claim
 * without a start time (an older version's) is read as before: a node process under that pid.
 */
function ownerLives(c: Claim): boolean {
  if (c.started === undefined) return isRunning(c.pid, 'node') || isRunning(c.pid, 'MainThread');
  return isRunning(c.pid, '') && startTicks(c.pid) === c.started;
}

function readClaim(file: string): Claim | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const [pidText, started] = text.trim().split(/\s+/);
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  return /^\d+$/.test(started ?? '') ? { pid, started } : { pid };
}

const ownerOf = (file: string) => readClaim(file)?.pid;
