// The start banner's line for workers that run in processes of their own: the command that starts
// one against what this start runs. "run `npm run worker`" alone stopped at once with "DATABASE_URL
// and REDIS_URL must be set" (a new-user trial): the local servers' addresses and the key files this
// start generated were nowhere to be seen. Only what the start made up itself is spelled out (the
// local servers take no password on 127.0.0.1); what the shell set (a DATABASE_URL with its
// password, BLASTGATE_ settings) a worker started from the same shell has already.
import { join } from 'node:path';

export interface WorkerHintInput {
  dataDir: string;
  /** The checkout (npm run worker reads its package.json): the command starts there (trial N ran it elsewhere). */
  cwd: string;
  /** The local servers' URLs this start runs (undefined: the shell's own URL is used). */
  localDatabaseUrl?: string;
  localRedisUrl?: string;
  /** The snapshot key and the default signing secret came from the data folder (embedded mode). */
  keyFromDataDir: boolean;
  secretFromDataDir: boolean;
  /** Embedded mode's default downstream allowlist (this machine), when the shell set none. */
  embeddedAllow?: readonly string[];
}

export function workerCommand(o: WorkerHintInput): string {
  const env = [
    o.localDatabaseUrl && `DATABASE_URL=${o.localDatabaseUrl}`,
    o.localRedisUrl && `REDIS_URL=${o.localRedisUrl}`,
    o.keyFromDataDir && `BLASTGATE_SNAPSHOT_KEY_FILE=${join(o.dataDir, 'snapshot-key')}`,
    o.secretFromDataDir && `BLASTGATE_SIGNING_SECRET_FILE=${join(o.dataDir, 'signing-secret')}`,
    // A worker given both URLs is not in embedded mode: without this it may call no local downstream.
    o.embeddedAllow && `BLASTGATE_DOWNSTREAM_ALLOW=${o.embeddedAllow.join(',')}`,
  ].filter(Boolean);
  return `cd ${o.cwd} && ${[...env, 'npm run worker'].join(' ')}`;
}
