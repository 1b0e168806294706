// The one rule for text that Blastgate stores or shows. A person reviews plans, reports and audit
// entries by eye: a character that is invisible, reorders what follows (bidi overrides) or cannot
// be stored (NUL, lone surrogates) would let one ID display as another, or alter text on its way
// into PostgreSQL. Applied by the `id`, `text` and `multiline-text` string formats of every request
// schema (plugins/validation.ts), and by the NDJSON and text line readers.

/** The three kinds of text, from strict to loose. */
export type TextKind = 'id' | 'text' | 'multiline-text';

/**
 * Refused everywhere: C0 and C1 controls and DEL (Cc), invisible formatting characters (Cf: bidi
 * marks, embeddings, overrides and isolates, zero-width space/joiners, word joiner, byte order
 * mark, soft hyphen, tag characters…), lone surrogates (Cs) and the Unicode line/paragraph
 * separators (Zl, Zp), which break lines without being a line break anyone expects.
 */
const REFUSED = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;
/** Multi-line free text may also hold tab, line feed and carriage return. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const REFUSED_MULTILINE = /[\p{Cf}\p{Cs}\p{Zl}\p{Zp}\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/u;
/** IDs never hold whitespace either: a list is split on it, and it cannot be seen at the end. */
const REFUSED_ID = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}\p{White_Space}]/u;

const PATTERNS: Record<TextKind, RegExp> = { id: REFUSED_ID, text: REFUSED, 'multiline-text': REFUSED_MULTILINE };

export const TEXT_RULES: Record<TextKind, string> = {
  id: 'valid UTF-8 without whitespace, control characters, invisible formatting characters (bidi controls, zero-width characters, byte order mark) or lone surrogates',
  text: 'valid UTF-8 without control characters (line breaks and tabs included), invisible formatting characters (bidi controls, zero-width characters, byte order mark) or lone surrogates, and not only whitespace',
  'multiline-text':
    'valid UTF-8 without control characters other than tab and line breaks, invisible formatting characters (bidi controls, zero-width characters, byte order mark) or lone surrogates, and not only whitespace',
};

// Names of the characters people meet in practice; the others are described by their category.
const NAMES: Record<number, string> = {
  0x00: 'NUL',
  0x09: 'CHARACTER TABULATION',
  0x0a: 'LINE FEED',
  0x0d: 'CARRIAGE RETURN',
  0x1b: 'ESCAPE',
  0x20: 'SPACE',
  0x7f: 'DELETE',
  0x85: 'NEXT LINE',
  0xa0: 'NO-BREAK SPACE',
  0xad: 'SOFT HYPHEN',
  0x061c: 'ARABIC LETTER MARK',
  0x200b: 'ZERO WIDTH SPACE',
  0x200c: 'ZERO WIDTH NON-JOINER',
  0x200d: 'ZERO WIDTH JOINER',
  0x200e: 'LEFT-TO-RIGHT MARK',
  0x200f: 'RIGHT-TO-LEFT MARK',
  0x2028: 'LINE SEPARATOR',
  0x2029: 'PARAGRAPH SEPARATOR',
  0x202a: 'LEFT-TO-RIGHT EMBEDDING',
  0x202b: 'RIGHT-TO-LEFT EMBEDDING',
  0x202c: 'POP DIRECTIONAL FORMATTING',
  0x202d: 'LEFT-TO-RIGHT OVERRIDE',
  0x202e: 'RIGHT-TO-LEFT OVERRIDE',
  0x2060: 'WORD JOINER',
  0x2066: 'LEFT-TO-RIGHT ISOLATE',
  0x2067: 'RIGHT-TO-LEFT ISOLATE',
  0x2068: 'FIRST STRONG ISOLATE',
  0x2069: 'POP DIRECTIONAL ISOLATE',
  0x3000: 'IDEOGRAPHIC SPACE',
  0xfeff: 'BYTE ORDER MARK',
};

/** "U+202E" for a code point. */
export const codePointLabel = (cp: number) => `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;

function characterName(ch: string): string {
  const cp = ch.codePointAt(0)!;
  const name = NAMES[cp];
  if (name) return name;
  if (cp >= 0xd800 && cp <= 0xdfff) return 'a lone surrogate';
  if (/\p{Cc}/u.test(ch)) return 'a control character';
  if (/\p{Cf}/u.test(ch)) return 'an invisible formatting character';
  if (/\p{White_Space}/u.test(ch)) return 'a whitespace character';
  return 'a line separator';
}

export interface TextProblem {
  /** What is wrong, for humans: `contains U+202E RIGHT-TO-LEFT OVERRIDE at position 3`. */
  message: string;
  codePoint: string;
  /** Position of the character, counted in code points from 0. */
  position: number;
  /** The value with every character outside printable ASCII escaped, so it can be seen. */
  escaped: string;
}

/**
 * Free text that is only whitespace says nothing, yet passed every length rule: a reason of three
 * tabs and a ticket of one space planned a delete (a trial). Refused like a character is; an empty
 * value is left to each field's minLength.
 */
const ONLY_WHITESPACE = /^\p{White_Space}+$/u;

/** The first character of `value` that `kind` refuses, described; null when the text is fine. */
export function textProblem(value: string, kind: TextKind): TextProblem | null {
  if (kind !== 'id' && ONLY_WHITESPACE.test(value)) {
    const cp = value.codePointAt(0)!;
    return {
      message: `is only whitespace (${codePointLabel(cp)} ${characterName(String.fromCodePoint(cp))} first): write it out`,
      codePoint: codePointLabel(cp),
      position: 0,
      escaped: escapeText(value),
    };
  }
  const m = PATTERNS[kind].exec(value);
  if (!m) return null;
  const ch = m[0];
  const cp = ch.codePointAt(0)!;
  const position = [...value.slice(0, m.index)].length;
  return {
    message: `contains ${codePointLabel(cp)} ${characterName(ch)} at position ${position}`,
    codePoint: codePointLabel(cp),
    position,
    escaped: escapeText(value),
  };
}

export const isValidText = (value: string, kind: TextKind) =>
  !PATTERNS[kind].test(value) && (kind === 'id' || !ONLY_WHITESPACE.test(value));

/**
 * `app_1\u200b` for `app_1` followed by a zero-width space: every character outside printable
 * ASCII as \uXXXX (\u{XXXXX} beyond the BMP), and the backslash doubled, so that look-alikes
 * (a Cyrillic "а" for a Latin "a") and invisible characters show.
 */
export function escapeText(value: string): string {
  let out = '';
  for (const ch of value) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (cp >= 0x20 && cp < 0x7f) out += ch;
    else if (cp > 0xffff) out += `\\u{${cp.toString(16)}}`;
    else out += `\\u${cp.toString(16).padStart(4, '0')}`;
  }
  return out;
}

const PLAIN_ASCII = /^[\x20-\x7e]*$/;

/** `{ escaped }` for a value with anything outside printable ASCII, else nothing: spread it into a view. */
export const escapedIfNeeded = (value: string): { escaped?: string } =>
  PLAIN_ASCII.test(value) ? {} : { escaped: escapeText(value) };

/** The value quoted for a message: as is when plain ASCII, else its escaped form. */
export const showText = (value: string) => (PLAIN_ASCII.test(value) ? value : `"${escapeText(value)}"`);

/** What PostgreSQL cannot store in text or jsonb: NUL, and lone surrogates (altered on the way in). */
const UNSTORABLE = /[\0\p{Cs}]/u;

/** The first character PostgreSQL could not store unchanged, described; null when there is none. */
export function storageProblem(value: string): TextProblem | null {
  const m = UNSTORABLE.exec(value);
  if (!m) return null;
  const cp = m[0].codePointAt(0)!;
  const position = [...value.slice(0, m.index)].length;
  return {
    message: `contains ${codePointLabel(cp)} ${characterName(m[0])} at position ${position}`,
    codePoint: codePointLabel(cp),
    position,
    escaped: escapeText(value),
  };
}

export const isStorable = (value: string) => !UNSTORABLE.test(value);

/** Whether `value` has more than `max` characters, counted as code points (as JSON Schema does). */
export const longerThan = (value: string, max: number) => value.length > max && [...value].length > max;

/**
 * A character a bearer token cannot hold: a token is one word of visible ASCII, what
 * `Authorization: Bearer <token>` carries and the API reads (auth/plugin.ts). The server's
 * BLASTGATE_ADMIN_TOKEN and the CLI's token are checked by it alike.
 */
export const NOT_A_TOKEN_CHAR = /[^\x21-\x7e]/;
