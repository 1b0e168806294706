// Where the API is and who we are: flags win over the environment. The token is read here and
// only ever put into an Authorization header: nothing prints it, not even --debug output.
import { readFileSync, statSync } from 'node:fs';
import { misspeltAmong, notASetting } from '../lib/env-names.ts';
import { NOT_A_TOKEN_CHAR } from '../lib/text.ts';
import { usageError } from './exit-codes.ts';

/** Every environment variable the CLI reads (README, "CLI and CI pipelines"). */
export const CLI_SETTINGS = [
  'BLASTGATE_URL',
  'BLASTGATE_TOKEN',
  'BLASTGATE_TOKEN_FILE',
  'BLASTGATE_REDIS_URL',
  'BLASTGATE_QUEUE_PREFIX',
  'BLASTGATE_DEBUG_RSS',
] as const;

export interface SettingWarning {
  variable: string;
  didYouMean: string;
  message: string;
}

/**
 * A variable set a typo or few from one the CLI reads, and no setting of the server's either: the
 * CLI would ignore it and use the default (with --via-queue, a misspelt queue prefix sent the job
 * to the default queue, another installation's on a shared Redis). Said on stderr, never stdout.
 */
export function misspeltCliSettings(env: NodeJS.ProcessEnv = process.env): SettingWarning[] {
  return misspeltAmong(env, CLI_SETTINGS).map(([variable, didYouMean]) => ({
    variable,
    didYouMean,
    message: notASetting(variable, didYouMean).replace(/^warning: /, ''),
  }));
}

/** The API's own default (src/config.ts: HOST 127.0.0.1, PORT 3000). */
export const DEFAULT_URL = 'http://127.0.0.1:3000';

export interface ConnectionFlags {
  url?: string;
  token?: string;
  tokenFile?: string;
}

export interface Connection {
  url: string;
  token: string | undefined;
}

export function resolveConnection(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): Connection {
  const raw = flags.url ?? env.BLASTGATE_URL ?? DEFAULT_URL;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw usageError(`--url / BLASTGATE_URL must be an http(s) URL (got "${raw}")`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw usageError(`--url / BLASTGATE_URL must be an http(s) URL (got "${raw}")`);
  return { url: url.toString().replace(/\/+$/, ''), token: readToken(flags, env) };
}

/**
 * A token file others on the machine may read (a trial's 0644 file passed without a word), said as
 * ssh says it of a key, but not refused: the file is the operator's, and a CI runner's secrets
 * mount may be so by design. Null when there is none, it is private, or its mode cannot be read.
 */
export function tokenFileWarning(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env) {
  const file = flags.token ? undefined : (flags.tokenFile ?? env.BLASTGATE_TOKEN_FILE);
  if (!file || process.platform === 'win32') return null;
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch {
    return null;
  }
  if ((mode & 0o077) === 0) return null;
  const octal = mode.toString(8).padStart(4, '0');
  return {
    code: 'TOKEN_FILE_READABLE',
    file,
    mode: octal,
    message: `the token file ${file} is readable by other users (mode ${octal}): chmod 600 ${file}`,
  };
}

function readToken(flags: ConnectionFlags, env: NodeJS.ProcessEnv): string | undefined {
  if (flags.token) return checkToken(flags.token.trim(), '--token');
  const file = flags.tokenFile ?? env.BLASTGATE_TOKEN_FILE;
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw usageError(`cannot read the token file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    const token = text.replace(/^\uFEFF/, '').trim();
    if (!token) throw usageError(`the token file ${file} is empty`);
    return checkToken(token, `the token file ${file}`);
  }
  const token = env.BLASTGATE_TOKEN?.trim();
  return token ? checkToken(token, 'BLASTGATE_TOKEN') : undefined;
}

/**
 * A token is one word of visible ASCII: what `Authorization: Bearer <token>` carries and the API
 * reads (auth/plugin.ts). A second line, a space, a control or a non-ASCII character in it is a
 * broken file or variable, said as a usage error naming what and where — never the token: a
 * trial's two-line token file came back as "CONNECTION_FAILED: … Headers.append: "Bearer bg_…" is
 * an invalid header value", the secret printed whole, exit 1.
 */
function checkToken(token: string, source: string): string {
  const bad = NOT_A_TOKEN_CHAR.exec(token);
  if (!bad) return token;
  const c = bad[0];
  const what =
    c === '\n' || c === '\r'
      ? 'more than one line'
      : /\s/.test(c)
        ? c === '\t'
          ? 'a tab'
          : 'a space'
        : c < ' ' || c === '\x7f'
          ? 'a control character'
          : 'a character other than visible ASCII';
  throw usageError(
    `${source} holds ${what} (at character ${bad.index + 1}): a token is one word of visible ASCII characters, as Blastgate makes them (bg_…); the token is not shown`,
  );
}
