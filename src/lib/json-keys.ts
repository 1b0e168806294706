// JSON.parse keeps the last of a key given twice: `{"mode": "soft", …, "mode": "hard"}` reads as
// hard, `{"id": "app_1", "id": "site_1"}` as site_1. A deletion gate must not guess which one the
// sender meant, so every JSON body and NDJSON line is refused when an object repeats a key
// (DUPLICATE_KEY, naming the key and where: refuseDuplicateKeys in lines.ts). Run on text
// JSON.parse has already accepted. No imports: the CLI package ships this file to check its own
// JSON arguments and ID lists the same way.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** `body.spec.mode`, `body["a b"]`, `body.ids.3`: the same field names as schema errors use. */
export const fieldSegment = (k: string | number) =>
  typeof k === 'number' || IDENTIFIER.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`;

interface Frame {
  /** Keys seen so far; null for an array. */
  keys: Set<string> | null;
  path: string;
  expectKey: boolean;
  index: number;
  lastKey: string;
}

/** The first repeated key in document order and the path of the object that repeats it. */
export function findDuplicateKey(text: string, where: string): { key: string; field: string } | null {
  // No object, no key: arrays of IDs and plain strings are scanned no further.
  if (text.indexOf('{') === -1) return null;
  const stack: Frame[] = [];
  const childPath = () => {
    const top = stack[stack.length - 1];
    if (!top) return where;
    return top.path + fieldSegment(top.keys ? top.lastKey : top.index);
  };
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      let j = i + 1;
      let escaped = false;
      while (text.charCodeAt(j) !== QUOTE) {
        if (text.charCodeAt(j) === BACKSLASH) {
          escaped = true;
          j++;
        }
        j++;
      }
      const top = stack[stack.length - 1];
      if (top?.keys && top.expectKey) {
        // `"\u0069d"` is the key "id": compared decoded.
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        if (top.keys.has(key)) return { key, field: top.path };
        top.keys.add(key);
        top.lastKey = key;
        top.expectKey = false;
      }
      i = j;
    } else if (c === 0x7b || c === 0x5b) {
      stack.push({
        keys: c === 0x7b ? new Set() : null,
        path: childPath(),
        expectKey: c === 0x7b,
        index: 0,
        lastKey: '',
      });
    } else if (c === 0x7d || c === 0x5d) {
      stack.pop();
    } else if (c === 0x2c) {
      const top = stack[stack.length - 1];
      if (top?.keys) top.expectKey = true;
      else if (top) top.index++;
    }
  }
  return null;
}
