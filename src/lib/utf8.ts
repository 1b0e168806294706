// Strict UTF-8. Node's decoders replace invalid bytes with U+FFFD without a word, so two IDs that
// differ only in an invalid byte would be stored as one; every body is checked here instead.
import { isUtf8 } from 'node:buffer';

/**
 * Length of the longest prefix of `buf` that ends on a character boundary, i.e. without a
 * multi-byte sequence cut short by the end of a chunk (0–3 bytes are left over).
 */
export function completePrefix(buf: Uint8Array): number {
  const n = buf.length;
  // Look back at most 3 bytes for the lead byte of a sequence that may be incomplete.
  for (let i = n - 1; i >= 0 && i >= n - 3; i--) {
    const b = buf[i]!;
    if (b < 0x80) return n; // ASCII: everything before it is complete
    if (b >= 0xc0) {
      const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
      return i + need > n ? i : n;
    }
  }
  return n;
}

/** Offset of the first byte that is not part of valid UTF-8, or -1 when all of it is valid. */
export function invalidUtf8At(buf: Uint8Array): number {
  if (isUtf8(buf)) return -1;
  for (let i = 0; i < buf.length;) {
    const b = buf[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    // Lead byte, length and the allowed range of the second byte (no overlongs, no surrogates,
    // nothing beyond U+10FFFF), per the Unicode standard's table of well-formed sequences.
    let len: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) len = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      len = 3;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      len = 4;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;
    } else return i;
    if (i + len > buf.length) return i;
    const second = buf[i + 1]!;
    if (second < lo || second > hi) return i;
    for (let k = 2; k < len; k++) if ((buf[i + k]! & 0xc0) !== 0x80) return i;
    i += len;
  }
  return -1;
}

/** 1-based line and column (in bytes) of `offset`. */
export function lineAndColumn(buf: Uint8Array, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset; i++) {
    if (buf[i] === 0x0a) {
      line++;
      start = i + 1;
    }
  }
  return { line, column: offset - start + 1 };
}

/** The byte at `offset` as `0xFF`, for messages. */
export const byteLabel = (buf: Uint8Array, offset: number) =>
  `0x${(buf[offset] ?? 0).toString(16).toUpperCase().padStart(2, '0')}`;
