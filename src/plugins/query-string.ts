// The query-string parser of every route, and its refusal of broken percent-encoding.
//
// Fastify's default parser (fast-querystring) keeps a value it cannot decode as the raw text, so
// `reason=rrr%ff%fe` became the reason "rrr%ff%fe": stored, audited and shown as if the client
// had meant it. A path with the same bytes is already refused (400 BAD_URL, plugins/errors.ts);
// the query string now is too, naming the parameter. The parser cannot answer itself: it runs
// inside the router, where a throw becomes a 500 and not our error shape. So it parses what it
// can, notes what it could not decode, and an onRequest hook answers 400 before anything else
// (authentication included, as for a broken path) looks at the request.
import type { FastifyInstance } from 'fastify';
import { BadRequestError } from '../lib/errors.ts';
import { documentErrorResponses } from '../lib/schemas.ts';

/** A parameter whose name or value is not percent-encoded UTF-8. */
interface BadParam {
  /** `querystring.<name>`, or `querystring` when the name itself does not decode. */
  field: string;
  message: string;
  /** The name as sent, when it is the name that does not decode. */
  name?: string;
  /** Where in the parameter's encoded text the problem starts (0-based). */
  position: number;
}

// What each parsed query string could not decode. Keyed by the parsed object (request.query
// before any hook or validator touches it), so nothing extra appears on the object itself.
const broken = new WeakMap<object, BadParam[]>();

/** Most broken parameters named in one answer (each is named once). */
const MAX_NAMED = 20;
const HEX2 = /^[0-9A-Fa-f]{2}$/;
// fatal: invalid UTF-8 (lone continuation bytes, truncated sequences, overlongs, surrogates,
// beyond U+10FFFF) throws instead of becoming U+FFFD; ignoreBOM: a leading U+FEFF is kept, as
// decodeURIComponent keeps it.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

type Decoded = { value: string } | { problem: string; position: number };

/** decodeURIComponent that says where and why it failed (a run of escapes decodes as one). */
function decode(text: string): Decoded {
  let i = text.indexOf('%');
  if (i < 0) return { value: text };
  let out = text.slice(0, i);
  while (i < text.length) {
    const next = text.indexOf('%', i);
    if (next < 0) {
      out += text.slice(i);
      break;
    }
    out += text.slice(i, next);
    const bytes: number[] = [];
    let j = next;
    while (text.charCodeAt(j) === 0x25) {
      const hex = text.slice(j + 1, j + 3);
      if (!HEX2.test(hex)) return { problem: 'a "%" that is not followed by two hex digits', position: j };
      bytes.push(parseInt(hex, 16));
      j += 3;
    }
    try {
      out += utf8.decode(Uint8Array.from(bytes));
    } catch {
      return { problem: 'percent-encoded bytes that are not UTF-8', position: next };
    }
    i = j;
  }
  return { value: out };
}

/**
 * `routerOptions.querystringParser`: what fast-querystring makes of a valid query string (`+` is
 * a space, a repeated name gives an array, a name without `=` has the value ""), and what it
 * could not decode noted for installQueryStringCheck.
 */
export function parseQueryString(qs: string): Record<string, unknown> {
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  if (qs.length === 0) return out;
  const bad: BadParam[] = [];
  for (const pair of qs.split('&')) {
    if (pair.length === 0) continue;
    const eq = pair.indexOf('=');
    const rawName = (eq < 0 ? pair : pair.slice(0, eq)).replace(/\+/g, ' ');
    const rawValue = eq < 0 ? '' : pair.slice(eq + 1).replace(/\+/g, ' ');
    const name = decode(rawName);
    if (!('value' in name)) {
      if (bad.length < MAX_NAMED)
        bad.push({
          field: 'querystring',
          message: `a parameter name must be percent-encoded UTF-8; it has ${name.problem} at position ${name.position}`,
          name: rawName.slice(0, 100),
          position: name.position,
        });
      continue;
    }
    const value = decode(rawValue);
    if (!('value' in value)) {
      const field = `querystring.${name.value}`;
      if (bad.length < MAX_NAMED && !bad.some((b) => b.field === field))
        bad.push({
          field,
          message: `must be percent-encoded UTF-8; it has ${value.problem} at position ${value.position}`,
          position: value.position,
        });
      continue;
    }
    const seen = out[name.value];
    if (seen === undefined) out[name.value] = value.value;
    else if (Array.isArray(seen)) seen.push(value.value);
    else out[name.value] = [seen, value.value];
  }
  if (bad.length) broken.set(out, bad);
  return out;
}

/** Refuses a request whose query string did not decode: 400 BAD_URL naming the parameters. */
export function installQueryStringCheck(app: FastifyInstance) {
  // This, or a path parameter or query that fails its schema, is 400 on every route that has them.
  documentErrorResponses(app, [400], (route) => route.url.includes(':') || route.schema?.querystring !== undefined);
  app.addHook('onRequest', async (request) => {
    const bad = typeof request.query === 'object' && request.query !== null ? broken.get(request.query) : undefined;
    if (!bad) return;
    const first = bad[0]!;
    throw new BadRequestError(
      'BAD_URL',
      `Invalid ${first.field}: ${first.message}. Percent-encode text as UTF-8 (encodeURIComponent, URLSearchParams); nothing was done`,
      bad,
    );
  });
}
