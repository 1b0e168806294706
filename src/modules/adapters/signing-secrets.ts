// The HMAC secrets http adapters sign with. A declaration names one (`"signingSecret":
// "apps-prod"`); the value comes from this process's environment, never from the database:
//   BLASTGATE_SECRET_APPS_PROD=<value>  or  BLASTGATE_SECRET_APPS_PROD_FILE=/run/secrets/apps-prod
// (name upper-cased, `-` → `_`). A declaration that names none uses the default secret,
// BLASTGATE_SIGNING_SECRET (or BLASTGATE_SIGNING_SECRET_FILE; embedded mode generates one).
// Values are held here only: this object serialises and inspects as its names, so logging it
// (or a config holding it) cannot print a secret.
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';

/** Lower-case letters and digits in words joined by single hyphens, at most 64 characters; a name
 * may not end in `-file` (BLASTGATE_SECRET_<NAME>_FILE is the file form of <NAME>). */
export const SECRET_NAME_PATTERN = '^(?=.{1,64}$)(?!.*-file$)[a-z0-9]+(?:-[a-z0-9]+)*$';
export const MIN_SECRET_LENGTH = 32;
export const DEFAULT_SECRET_ENV = 'BLASTGATE_SIGNING_SECRET';
const PREFIX = 'BLASTGATE_SECRET_';

export const secretEnvName = (name: string) => `${PREFIX}${name.toUpperCase().replace(/-/g, '_')}`;

export type Resolved = { ok: true; secret: string } | { ok: false; problem: string };

export class SigningSecrets {
  readonly #named: ReadonlyMap<string, string>;
  readonly #default: string | undefined;

  constructor(named: ReadonlyMap<string, string> = new Map(), defaultSecret?: string) {
    this.#named = named;
    this.#default = defaultSecret;
  }

  get names(): string[] {
    return [...this.#named.keys()].sort();
  }
  get hasDefault(): boolean {
    return this.#default !== undefined;
  }
  /** The same named secrets with this default (embedded mode's generated one). */
  withDefault(secret: string | undefined): SigningSecrets {
    return new SigningSecrets(this.#named, secret);
  }

  /** The secret an adapter declaration asks for (undefined: the default), or why there is none. */
  resolve(name: string | undefined): Resolved {
    if (name === undefined) {
      return this.#default !== undefined
        ? { ok: true, secret: this.#default }
        : {
            ok: false,
            problem: `no signingSecret is named and this server has no default secret: name one (e.g. "signingSecret": "apps-prod" with ${secretEnvName('apps-prod')} set) or set ${DEFAULT_SECRET_ENV} or ${DEFAULT_SECRET_ENV}_FILE`,
          };
    }
    const secret = this.#named.get(name);
    if (secret !== undefined) return { ok: true, secret };
    const env = secretEnvName(name);
    const known = this.names.length ? this.names.map((n) => `"${n}"`).join(', ') : 'none';
    return {
      ok: false,
      problem: `signing secret "${name}" is not set on this server: set ${env} or ${env}_FILE (secrets this server has: ${known})`,
    };
  }

  toJSON() {
    return { names: this.names, default: this.hasDefault };
  }
  [inspect.custom]() {
    return `SigningSecrets ${JSON.stringify(this.toJSON())}`;
  }
}

type ReadFile = (path: string) => string;

/**
 * Every BLASTGATE_SECRET_<NAME>[_FILE] of `env`, and BLASTGATE_SIGNING_SECRET[_FILE] as the default.
 * Problems name the variable and never echo a value.
 */
export function readSigningSecrets(
  env: NodeJS.ProcessEnv,
  readFile: ReadFile = (p) => readFileSync(p, 'utf8'),
): { secrets: SigningSecrets; problems: string[] } {
  const problems: string[] = [];
  const read = (variable: string): string | undefined => {
    const direct = env[variable]?.trim() || undefined;
    const file = env[`${variable}_FILE`]?.trim() || undefined;
    if (direct !== undefined && file !== undefined) {
      problems.push(`set ${variable} or ${variable}_FILE, not both`);
      return undefined;
    }
    let value = direct;
    if (file !== undefined) {
      try {
        value = readFile(file).trim();
      } catch (err) {
        problems.push(`${variable}_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
        return undefined;
      }
    }
    if (value !== undefined && value.length < MIN_SECRET_LENGTH) {
      problems.push(
        `${file !== undefined ? `${variable}_FILE (${file})` : variable} must hold at least ${MIN_SECRET_LENGTH} characters (got ${value.length})`,
      );
      return undefined;
    }
    return value;
  };

  const named = new Map<string, string>();
  const variables = new Set(
    Object.keys(env)
      .filter((k) => k.startsWith(PREFIX) && (env[k]?.trim() ?? '') !== '')
      .map((k) => k.replace(/_FILE$/, '')),
  );
  for (const variable of [...variables].sort()) {
    const name = variable.slice(PREFIX.length).toLowerCase().replace(/_/g, '-');
    if (!new RegExp(SECRET_NAME_PATTERN).test(name)) {
      problems.push(
        `${variable}: "${name}" is not a secret name (letters and digits in words joined by single "_", at most 64 characters; e.g. ${secretEnvName('apps-prod')})`,
      );
      continue;
    }
    const value = read(variable);
    if (value !== undefined) named.set(name, value);
  }
  return { secrets: new SigningSecrets(named, read(DEFAULT_SECRET_ENV)), problems };
}
