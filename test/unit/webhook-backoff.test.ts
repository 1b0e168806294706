// Webhook retries double from BLASTGATE_WEBHOOK_BACKOFF_MS up to BLASTGATE_WEBHOOK_BACKOFF_MAX_MS.
// Doubling without a cap, the default 8 attempts ended two minutes after the event: a receiver
// down for longer (a deploy, a host restart) lost its events (a new-user trial).
import { describe, expect, it } from 'vitest';
import { DEFAULT_WEBHOOK_SETTINGS, retryDelayMs, retryWindowMs } from '../../src/modules/webhooks/settings.ts';

describe('retryDelayMs', () => {
  it.each([
    // attemptsMade, base, max, delay
    [1, 1_000, 900_000, 1_000],
    [2, 1_000, 900_000, 2_000],
    [10, 1_000, 900_000, 512_000],
    [11, 1_000, 900_000, 900_000],
    [24, 1_000, 900_000, 900_000],
    [200, 1_000, 900_000, 900_000],
    [3, 50, 60, 60],
    [1, 5_000, 1_000, 1_000],
    [0, 1_000, 900_000, 1_000],
  ])('retry after %i attempts, base %i ms, cap %i ms: %i ms', (made, backoffMs, backoffMaxMs, want) => {
    expect(retryDelayMs(made, { backoffMs, backoffMaxMs })).toBe(want);
  });

  it('never exceeds the cap nor falls below the base, and never decreases', () => {
    for (const base of [10, 1_000, 3_600_000])
      for (const max of [10, 60_000, 86_400_000]) {
        let last = 0;
        for (let made = 1; made <= 25; made++) {
          const d = retryDelayMs(made, { backoffMs: base, backoffMaxMs: max });
          expect(d).toBeLessThanOrEqual(max);
          expect(d).toBeGreaterThanOrEqual(Math.min(base, max));
          expect(d).toBeGreaterThanOrEqual(last);
          expect(Number.isFinite(d)).toBe(true);
          last = d;
        }
      }
  });
});

it('keeps retrying a delivery for more than an hour and a half by default, not two minutes', () => {
  const window = retryWindowMs(DEFAULT_WEBHOOK_SETTINGS);
  expect(window).toBe(1_023_000 + 5 * 900_000);
  expect(window).toBeGreaterThan(90 * 60_000);
  // The schedule of before: 8 attempts doubling from 1 s, uncapped.
  expect(retryWindowMs({ attempts: 8, backoffMs: 1_000, backoffMaxMs: Number.MAX_SAFE_INTEGER })).toBe(127_000);
});
