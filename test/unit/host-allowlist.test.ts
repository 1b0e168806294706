import type { LookupAddress, LookupOptions } from 'node:dns';
import { describe, expect, it } from 'vitest';
import {
  DisallowedAddressError,
  guardedLookup,
  hostProblem,
  parseHostAllowlist,
  allowlistOf,
} from '../../src/modules/adapters/host-allowlist.ts';

const allowed = (entries: string, hostname: string) => hostProblem(parseHostAllowlist(entries).allow, hostname);
/** The hostname exactly as the URL parser writes it, as the adapter sees it. */
const host = (url: string) => new URL(url).hostname;

describe('BLASTGATE_DOWNSTREAM_ALLOW syntax', () => {
  it('accepts host names, *.domain, IP addresses, CIDR ranges and *, comma-separated', () => {
    const { allow, problems } = parseHostAllowlist(' Apps.Internal, *.svc.cluster.local ,10.0.0.0/8,::1,[fd00::1],*,');
    expect(problems).toEqual([]);
    expect(allow.entries).toEqual(['apps.internal', '*.svc.cluster.local', '10.0.0.0/8', '::1', '[fd00::1]', '*']);
  });

  it('refuses entries with a scheme, port or path, bad CIDRs and junk, naming each and the accepted forms', () => {
    const { problems } = parseHostAllowlist('https://apps.internal,apps.internal:8443,10.0.0.0/33,10.0.0.0/x,a b,/x');
    expect(problems).toHaveLength(6);
    expect(problems[0]).toBe(
      'BLASTGATE_DOWNSTREAM_ALLOW entry "https://apps.internal" is not a host name, *.domain, IP address or CIDR range (hosts only: no scheme, port or path; e.g. apps.internal, *.internal, 10.0.0.0/8, ::1)',
    );
    expect(problems[1]).toMatch(/"apps\.internal:8443"/);
  });
});

describe('host check', () => {
  it('allows listed names (case-insensitive), subdomains of a wildcard at any depth but not its apex', () => {
    expect(allowed('apps.internal', host('https://APPS.internal/x'))).toBeNull();
    expect(allowed('apps.internal', host('https://apps.internal./x'))).toBeNull();
    expect(allowed('*.internal', host('https://a.b.internal'))).toBeNull();
    expect(allowed('*.internal', host('https://internal'))).toBe('internal is not in BLASTGATE_DOWNSTREAM_ALLOW');
    expect(allowed('*.internal', host('https://evilinternal'))).toMatch(/not in/);
    expect(allowed('apps.internal', host('https://billing.internal'))).toMatch(/not in/);
    expect(allowed('', host('https://apps.internal'))).toMatch(/not in/);
  });

  it('allows IPs by exact entry or CIDR, in any spelling the URL parser accepts', () => {
    expect(allowed('10.0.0.0/8', host('http://10.200.3.4:8080'))).toBeNull();
    expect(allowed('10.0.0.0/8', host('http://0x0a.1.2.3'))).toBeNull(); // 10.1.2.3
    expect(allowed('10.0.0.0/8', host('http://11.0.0.1'))).toMatch(/11\.0\.0\.1 is not in/);
    expect(allowed('127.0.0.1', host('http://127.0.0.1:3000'))).toBeNull();
    expect(allowed('127.0.0.1', host('http://2130706433'))).toBeNull(); // 127.0.0.1 as one number
    expect(allowed('::1', host('http://[::1]:9000'))).toBeNull();
    expect(allowed('fd00::/8', host('http://[fd12:3456::1]'))).toBeNull();
    expect(allowed('fd00::/8', host('http://[fe12::1]'))).toMatch(/not in/);
    expect(allowed('*', host('http://203.0.113.9'))).toBeNull();
  });

  it('never allows link-local, metadata or unspecified addresses unless listed explicitly', () => {
    const broad = '*,0.0.0.0/0,::/0,*.internal';
    for (const url of [
      'http://169.254.169.254/latest/meta-data',
      'http://[::ffff:169.254.169.254]',
      'http://[::ffff:a9fe:a9fe]',
      'http://2852039166', // 169.254.169.254 as one number
      'http://169.254.170.2', // ECS task credentials
      'http://100.100.100.200',
      'http://0.0.0.0:8080',
      'http://[::]',
      'http://[fe80::1]',
      'http://[fd00:ec2::254]',
      'http://metadata.google.internal',
      'http://metadata',
    ])
      expect(allowed(broad, host(url)), url).toMatch(
        /never allowed unless BLASTGATE_DOWNSTREAM_ALLOW lists it explicitly/,
      );
    expect(allowed(broad, host('http://169.254.169.254'))).toBe(
      '169.254.169.254 is a link-local address (cloud metadata endpoints answer there): never allowed unless BLASTGATE_DOWNSTREAM_ALLOW lists it explicitly (the address itself, or a CIDR range inside 169.254.0.0/16)',
    );
    // Listed explicitly: the address, a range inside the dangerous one, the exact host name.
    expect(allowed('169.254.169.254', host('http://169.254.169.254'))).toBeNull();
    expect(allowed('169.254.10.0/24', host('http://169.254.10.7'))).toBeNull();
    expect(allowed('169.254.10.0/24', host('http://169.254.169.254'))).not.toBeNull();
    expect(allowed('metadata.google.internal', host('http://metadata.google.internal'))).toBeNull();
  });

  it('embedded mode lists this machine only', () => {
    const loopback = allowlistOf(['127.0.0.1', '::1', 'localhost']);
    expect(hostProblem(loopback, host('http://localhost:8080'))).toBeNull();
    expect(hostProblem(loopback, host('http://[::1]:8080'))).toBeNull();
    expect(hostProblem(loopback, host('http://10.0.0.1'))).not.toBeNull();
  });
});

describe('resolve-time check (DNS rebinding towards a metadata address)', () => {
  type Cb = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
  const resolver = (answer: string[]) => (_h: string, o: LookupOptions, cb: Cb) =>
    o.all
      ? cb(
          null,
          answer.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
        )
      : cb(null, answer[0]!, 4);
  const run = (entries: string, answer: string[], all: boolean) =>
    new Promise<{ err: NodeJS.ErrnoException | null }>((resolve) =>
      guardedLookup(allowlistOf(entries.split(',')), resolver(answer))('apps.internal', { all }, (err) =>
        resolve({ err }),
      ),
    );

  it('refuses a name that resolves to a never-allowed address, whatever the lookup form', async () => {
    for (const all of [false, true]) {
      const { err } = await run('apps.internal', ['169.254.169.254', '10.0.0.1'], all);
      expect(err).toBeInstanceOf(DisallowedAddressError);
      expect(err!.message).toMatch(/^apps\.internal resolved to 169\.254\.169\.254 is a link-local address/);
    }
  });

  it('lets ordinary addresses and explicitly listed ones through', async () => {
    expect((await run('apps.internal', ['10.0.0.1'], true)).err).toBeNull();
    expect((await run('apps.internal,169.254.169.254', ['169.254.169.254'], false)).err).toBeNull();
  });
});
