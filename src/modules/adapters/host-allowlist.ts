// Which hosts an http adapter may call: BLASTGATE_DOWNSTREAM_ALLOW, a comma-separated list of
//   apps.internal      one host name (case-insensitive)
//   *.apps.internal    every host name under that domain, at any depth (not apps.internal itself)
//   10.1.2.3  ::1      one IP address (IPv6 with or without brackets)
//   10.0.0.0/8         a CIDR range (IPv4 or IPv6)
//   *                  any host (not recommended)
// Ports are not restricted; a scheme, port or path in an entry is refused. Some addresses are
// never allowed unless an entry names them explicitly (the exact address or host name, or a CIDR
// range inside the dangerous one; `*`, `0.0.0.0/0` or a wildcard domain do not count): unspecified
// addresses, link-local ones (where cloud metadata endpoints answer, e.g. 169.254.169.254, which
// hands out the machine's cloud credentials), other metadata addresses and the metadata host
// names. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged as the IPv4 address it maps.
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';

export const ALLOW_ENV = 'BLASTGATE_DOWNSTREAM_ALLOW';
/** Embedded mode's list when BLASTGATE_DOWNSTREAM_ALLOW is not set: this machine only. */
export const EMBEDDED_ALLOW = ['127.0.0.1', '::1', 'localhost'];

type Bytes = number[];
interface Range {
  net: Bytes;
  bits: number;
}
type Entry =
  { kind: 'any' } | { kind: 'name'; name: string } | { kind: 'suffix'; suffix: string } | { kind: 'ip'; range: Range };

export interface HostAllowlist {
  /** The entries as written (normalised), for messages and 422 `allowed`. */
  readonly entries: readonly string[];
  readonly parsed: readonly Entry[];
}

const NEVER: { cidr: string; range: Range; why: string }[] = [
  ['0.0.0.0/8', 'an unspecified ("this network") address'],
  ['169.254.0.0/16', 'a link-local address (cloud metadata endpoints answer there)'],
  ['100.100.100.200/32', 'a cloud metadata address'],
  ['::/128', 'the unspecified address'],
  ['fe80::/10', 'a link-local address'],
  ['fd00:ec2::254/128', 'a cloud metadata address'],
].map(([cidr, why]) => ({ cidr: cidr!, range: parseCidr(cidr!)!, why: why! }));
const NEVER_NAMES = new Set([
  'metadata',
  'metadata.google.internal',
  'metadata.goog',
  'instance-data',
  'instance-data.ec2.internal',
]);

function parseIp(text: string): Bytes | null {
  const s = text.replace(/^\[(.*)\]$/, '$1');
  const v = isIP(s);
  if (v === 4) return s.split('.').map(Number);
  if (v !== 6) return null;
  // The URL parser writes IPv6 in hex groups only (a dotted IPv4 tail becomes two groups).
  const canonical = new URL(`http://[${s}]/`).hostname.slice(1, -1);
  const [left, right] = canonical.split('::') as [string, string | undefined];
  const groups = (p: string | undefined) => (p ? p.split(':').map((g) => parseInt(g, 16)) : []);
  const l = groups(left);
  const r = groups(right);
  const all = right === undefined ? l : [...l, ...Array<number>(8 - l.length - r.length).fill(0), ...r];
  const bytes = all.flatMap((g) => [g >> 8, g & 0xff]);
  // ::ffff:a.b.c.d is a.b.c.d: judge it as IPv4 (so a mapped metadata address is still refused).
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return bytes.slice(12);
  return bytes;
}

function parseCidr(text: string): Range | null {
  const [ip, bitsText, extra] = text.split('/');
  if (extra !== undefined || ip === undefined) return null;
  const net = parseIp(ip);
  if (!net) return null;
  const max = net.length * 8;
  // A mapped IPv4 range written in IPv6 bits (::ffff:10.0.0.0/104) counts in IPv4 bits.
  const offset = isIP(ip.replace(/^\[(.*)\]$/, '$1')) === 6 && net.length === 4 ? 96 : 0;
  const bits = bitsText === undefined ? max : Number(bitsText) - offset;
  if (bitsText !== undefined && !/^\d{1,3}$/.test(bitsText)) return null;
  if (!Number.isInteger(bits) || bits < 0 || bits > max) return null;
  return { net, bits };
}

function contains(r: Range, ip: Bytes): boolean {
  if (r.net.length !== ip.length) return false;
  for (let bit = 0; bit < r.bits; bit++) {
    const mask = 0x80 >> (bit % 8);
    if ((r.net[bit >> 3]! & mask) !== (ip[bit >> 3]! & mask)) return false;
  }
  return true;
}
/** `inner` lies entirely inside `outer`. */
const within = (inner: Range, outer: Range) => inner.bits >= outer.bits && contains(outer, inner.net);

const HOST_NAME =
  /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;
const normaliseName = (h: string) => h.toLowerCase().replace(/\.$/, '');

/** Parses the list; every bad entry is a problem naming it and the accepted forms. */
export function parseHostAllowlist(value: string, name = ALLOW_ENV): { allow: HostAllowlist; problems: string[] } {
  const problems: string[] = [];
  const entries: string[] = [];
  const parsed: Entry[] = [];
  for (const raw of value.split(',').map((e) => e.trim())) {
    if (raw === '') continue;
    const e = normaliseName(raw);
    let entry: Entry | null = null;
    if (e === '*') entry = { kind: 'any' };
    else if (e.startsWith('*.') && HOST_NAME.test(e.slice(2))) entry = { kind: 'suffix', suffix: e.slice(1) };
    else if (parseCidr(e)) entry = { kind: 'ip', range: parseCidr(e)! };
    else if (HOST_NAME.test(e) && !/^[\d.]+$/.test(e)) entry = { kind: 'name', name: e };
    if (!entry) {
      problems.push(
        `${name} entry "${raw}" is not a host name, *.domain, IP address or CIDR range (hosts only: no scheme, port or path; e.g. apps.internal, *.internal, 10.0.0.0/8, ::1)`,
      );
      continue;
    }
    entries.push(e);
    parsed.push(entry);
  }
  return { allow: { entries, parsed }, problems };
}

export const allowlistOf = (entries: readonly string[]): HostAllowlist => parseHostAllowlist(entries.join(',')).allow;

function ipProblem(allow: HostAllowlist, ip: Bytes, shown: string): string | null {
  const danger = NEVER.find((n) => contains(n.range, ip));
  const host = { net: ip, bits: ip.length * 8 };
  if (danger) {
    const explicit = allow.parsed.some(
      (e) => e.kind === 'ip' && within(e.range, danger.range) && within(host, e.range),
    );
    return explicit
      ? null
      : `${shown} is ${danger.why}: never allowed unless ${ALLOW_ENV} lists it explicitly (the address itself, or a CIDR range inside ${danger.cidr})`;
  }
  const ok = allow.parsed.some((e) => e.kind === 'any' || (e.kind === 'ip' && contains(e.range, ip)));
  return ok ? null : `${shown} is not in ${ALLOW_ENV}`;
}

/**
 * Why a host may not be called (null: it may). `hostname` as `new URL().hostname` writes it
 * (IPv6 in brackets).
 */
export function hostProblem(allow: HostAllowlist, hostname: string): string | null {
  const ip = parseIp(hostname);
  const shown = hostname.replace(/^\[(.*)\]$/, '$1');
  if (ip) return ipProblem(allow, ip, shown);
  const name = normaliseName(hostname);
  if (NEVER_NAMES.has(name)) {
    return allow.parsed.some((e) => e.kind === 'name' && e.name === name)
      ? null
      : `${name} is a cloud metadata host name: never allowed unless ${ALLOW_ENV} lists it explicitly`;
  }
  const ok = allow.parsed.some(
    (e) =>
      e.kind === 'any' ||
      (e.kind === 'name' && e.name === name) ||
      (e.kind === 'suffix' && name.endsWith(e.suffix) && name.length > e.suffix.length),
  );
  return ok ? null : `${name} is not in ${ALLOW_ENV}`;
}

/** A connection refused because the name resolved to an address that is never allowed. */
export class DisallowedAddressError extends Error {
  readonly code = 'EDISALLOWED';
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'DisallowedAddressError';
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
type Resolver = (hostname: string, options: LookupOptions, cb: LookupCallback) => void;

/**
 * A `lookup` for node:http that refuses a host name resolving to a never-allowed address (DNS
 * rebinding towards a metadata endpoint): the name passed the allowlist, the address must pass the
 * never-list too. Checked per connection, on the addresses actually connected to.
 */
export function guardedLookup(allow: HostAllowlist, resolve: Resolver = dnsLookup) {
  return (hostname: string, options: LookupOptions, cb: LookupCallback) => {
    resolve(hostname, options, (err, address, family) => {
      if (err) return cb(err, address, family);
      const list = Array.isArray(address) ? address.map((a) => a.address) : [address];
      for (const a of list) {
        const ip = parseIp(a);
        if (ip && NEVER.some((n) => contains(n.range, ip))) {
          const why = ipProblem(allow, ip, a);
          if (why) return cb(new DisallowedAddressError(`${hostname} resolved to ${why}`), address, family);
        }
      }
      cb(null, address, family);
    });
  };
}
