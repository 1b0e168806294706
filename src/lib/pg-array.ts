// PostgreSQL array literals for the hot paths' array parameters (`$1::text[]`, `$2::int[]`).
// node-postgres writes a JS array parameter element by element (prepareValue, two regex replaces
// and a concatenation each): in `npm run bench -- waves` that was ~19% of everything the workers
// allocated (~3.9 KB per item, ~19 arrays of 500 values per chunk), and its garbage collection a
// large share of their CPU. The literal built here is the same text node-postgres would send, and
// PostgreSQL parses it the same way (array_in, through the parameter's cast), with one join per
// array in the common case: no value null, none with a quote or backslash.

/** `{"a","b",NULL}`: a text[] literal. Each value is quoted; a quote or backslash in it is escaped. */
export function textArray(values: readonly (string | null | undefined)[]): string {
  if (values.length === 0) return '{}';
  let plain = true;
  for (const v of values) {
    if (v === null || v === undefined || v.includes('"') || v.includes('\\')) {
      plain = false;
      break;
    }
  }
  if (plain) return `{"${values.join('","')}"}`;
  // Inside double quotes only `"` and `\` are special (array_in): commas, braces, spaces and line
  // breaks are the value's own. A quoted "NULL" is the string; the bare NULL is a null.
  const parts = values.map((v) =>
    v === null || v === undefined ? 'NULL' : `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`,
  );
  return `{${parts.join(',')}}`;
}

/** `{1,2,NULL}`: an int[] / bigint[] literal (integers, as JS numbers or bigints). */
export function intArray(values: readonly (number | bigint | null | undefined)[]): string {
  if (values.length === 0) return '{}';
  if (!values.some((v) => v === null || v === undefined)) return `{${values.join(',')}}`;
  return `{${values.map((v) => (v === null || v === undefined ? 'NULL' : String(v))).join(',')}}`;
}
