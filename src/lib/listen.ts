// Where the API (and its metrics) listen, checked before anything starts: an address this machine
// does not have, a name it cannot resolve or a port in use ended the start with a Node stack trace
// printed twice and exit 1, after embedded mode had started PostgreSQL and Redis and migrated (a
// new-user trial). Now it is a configuration error naming the variable (exit 2), before all that.
import { createServer } from 'node:net';
import { ConfigError, type Config } from '../config.ts';

export interface ListenVars {
  host: string;
  port: string;
}

/** The ConfigError a failed listen on host:port means, or undefined for an error that is not about them. */
export function listenProblem(err: unknown, host: string, port: number, vars: ListenVars): ConfigError | undefined {
  const code = (err as { code?: string } | null)?.code;
  const where = `${host}:${port} (${vars.host}, ${vars.port})`;
  const say: Record<string, string> = {
    EADDRINUSE: `cannot listen on ${where}: another process uses ${vars.port} ${port}; stop it or choose another ${vars.port}`,
    EACCES: `cannot listen on ${where}: a port below 1024 needs privileges; choose ${vars.port} from 1024`,
    EADDRNOTAVAIL: `cannot listen on ${where}: ${vars.host} "${host}" is not an address of this machine`,
    ENOTFOUND: `cannot listen on ${where}: ${vars.host} "${host}" is not an address or a name this machine resolves`,
    EAI_AGAIN: `cannot listen on ${where}: ${vars.host} "${host}" could not be resolved (name service unavailable)`,
  };
  return code && say[code] ? new ConfigError([say[code]]) : undefined;
}

/** Listens on host:port for a moment and lets go: the problem a real listen would meet, if any. */
export async function checkListen(host: string, port: number, vars: ListenVars): Promise<ConfigError | undefined> {
  if (port === 0) return undefined; // any free port: nothing to be in use
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, exclusive: true }, resolve);
    });
    return undefined;
  } catch (err) {
    return listenProblem(err, host, port, vars);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}

/** Where a start listens, with the variables that say so: the API, and its metrics when asked for. */
export function listeners(config: Pick<Config, 'host' | 'port' | 'metricsHost' | 'metricsPort'>) {
  const all: [string, number, ListenVars][] = [[config.host, config.port, { host: 'HOST', port: 'PORT' }]];
  if (config.metricsPort !== undefined)
    all.push([
      config.metricsHost,
      config.metricsPort,
      { host: 'BLASTGATE_METRICS_HOST', port: 'BLASTGATE_METRICS_PORT' },
    ]);
  return all;
}
