// The date-times a request may carry: RFC 3339 (what the `date-time` format checks) and also an
// instant that JavaScript and PostgreSQL both hold and that is written back the same way. A leap
// second (23:59:60) is valid RFC 3339 but no JavaScript Date, and a year past 9999 (reached with a
// negative offset on 9999-12-31) prints as "+010000-…", which is no RFC 3339 date-time: both used
// to fail only once stored or answered (a 5xx, or a row that could no longer be read back).
import { fullFormats } from 'ajv-formats/dist/formats.js';

export const DATE_TIME_RULE =
  'an RFC 3339 date-time between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z (UTC), without a leap second, e.g. 2030-01-31T12:00:00Z';

const rfc3339 = fullFormats['date-time'] as { validate: (s: string) => boolean };

export function isStorableDateTime(s: string): boolean {
  if (!rfc3339.validate(s)) return false;
  const ms = Date.parse(s);
  if (!Number.isFinite(ms)) return false;
  const year = new Date(ms).getUTCFullYear();
  return year >= 1 && year <= 9999;
}
