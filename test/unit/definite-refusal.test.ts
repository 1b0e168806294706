// Which final HTTP answers say that the owning system changed nothing (an item failed `unapplied`,
// whose write-ahead mark may go): http-adapter.ts isDefiniteRefusal.
import { describe, expect, it } from 'vitest';
import { isDefiniteRefusal } from '../../src/modules/adapters/http-adapter.ts';

describe('isDefiniteRefusal', () => {
  it.each([400, 401, 403, 405, 412, 413, 422, 425, 451])('%i: refused as it stood, nothing changed', (s) => {
    expect(isDefiniteRefusal(s)).toBe(true);
  });
  // 404 and 410 also answer a retry of a delete that was applied; 408, 409 and 429 are retried (an
  // attempt before them may have been applied); a 303 answers a request that was carried out.
  it.each([200, 204, 303, 307, 404, 408, 409, 410, 429, 500, 502, 503, 504])('%i: not certain', (s) => {
    expect(isDefiniteRefusal(s)).toBe(false);
  });
});
