// The velocity limiter against the suite's real Redis, with a fake clock: windows, partial grants,
// refunds, tenants counted once per operation, no over-grant when two connections race, and a
// sequential model it must match exactly (fast-check).
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  createVelocityLimiter,
  MAX_TENANTS_PER_OPERATION,
  WINDOW_MS,
  type VelocityCaps,
  type VelocityGrant,
} from '../../src/modules/execution/velocity.ts';

let a: Redis;
let b: Redis;
beforeAll(async () => {
  a = new Redis(inject('redisUrl'), { lazyConnect: true });
  b = new Redis(inject('redisUrl'), { lazyConnect: true });
  await Promise.all([a.connect(), b.connect()]);
});
afterAll(async () => {
  await Promise.all([a?.quit(), b?.quit()]);
});

/** A clock the test moves; starts 15 s into a window. */
function fakeClock(start = 1_000 * WINDOW_MS + 15_000) {
  const c = {
    now: start,
    read: () => c.now,
    nextWindow: () => (c.now = (Math.floor(c.now / WINDOW_MS) + 1) * WINDOW_MS),
  };
  return c;
}
const prefix = () => `bgt_vel_${randomUUID()}`;
const caps = (maxItemsPerMinute: number, maxTenantsPerMinute = 1_000_000): VelocityCaps => ({
  maxItemsPerMinute,
  maxTenantsPerMinute,
});

describe('item cap', () => {
  it('grants up to the cap per window, partially, and gives the points back in the next window', async () => {
    const clock = fakeClock();
    const v = createVelocityLimiter(a, prefix(), clock.read);
    const c = caps(10);
    const g1 = await v.reserve('op1', 6, c);
    expect(g1).toMatchObject({ requested: 6, granted: 6, waitMs: 0, limitedBy: null });
    const g2 = await v.reserve('op1', 6, c);
    // 15 s into the window: 45 s to the next one.
    expect(g2).toMatchObject({ requested: 6, granted: 4, waitMs: 45_000, limitedBy: 'items' });
    clock.now += 5_000;
    expect(await v.reserve('op1', 1, c)).toMatchObject({ granted: 0, waitMs: 40_000, limitedBy: 'items' });
    // Another operation has its own budget.
    expect((await v.reserve('op2', 10, c)).granted).toBe(10);

    clock.now += 39_999; // still the same window
    expect((await v.reserve('op1', 1, c)).granted).toBe(0);
    clock.now += 1; // the window is decided by the injected clock, not by Redis TTLs
    const g3 = await v.reserve('op1', 12, c);
    expect(g3).toMatchObject({ granted: 10, waitMs: WINDOW_MS });
  });

  it('runs a request larger than the whole cap a cap at a time, one window after another', async () => {
    const clock = fakeClock();
    const v = createVelocityLimiter(a, prefix(), clock.read);
    let left = 25;
    const grants: number[] = [];
    while (left > 0) {
      const g = await v.reserve('op', left, caps(10));
      grants.push(g.granted);
      left -= g.granted;
      if (left > 0) {
        expect(g.waitMs).toBeGreaterThan(0);
        clock.now += g.waitMs;
      }
      expect(grants.length).toBeLessThan(10);
    }
    expect(grants).toEqual([10, 10, 5]);
  });

  it('refund gives unexecuted items back to the window, never more than was granted, never after it', async () => {
    const clock = fakeClock();
    const v = createVelocityLimiter(a, prefix(), clock.read);
    const c = caps(10);
    const g = await v.reserve('op', 10, c);
    await v.refund(g, 4);
    expect((await v.reserve('op', 10, c)).granted).toBe(4);

    // A refund is clamped to what the grant has left: 6 more, however often and however much.
    await v.refund(g, 100);
    await v.refund(g, 100);
    expect((await v.reserve('op', 100, c)).granted).toBe(6);

    // A refund that arrives after its window must not credit the current one.
    const late = await v.reserve('op', 5, caps(100));
    expect(late.granted).toBe(5);
    clock.nextWindow();
    expect((await v.reserve('op', 10, c)).granted).toBe(10);
    await v.refund(late, 5);
    expect((await v.reserve('op', 1, c)).granted).toBe(0);
  });

  it('rejects caps and counts that make no sense', async () => {
    const v = createVelocityLimiter(a, prefix(), fakeClock().read);
    await expect(v.reserve('op', 1, caps(0))).rejects.toThrow(/maxItemsPerMinute/);
    await expect(v.reserve('op', -1, caps(5))).rejects.toThrow(/item count/);
    // A binding tenant cap needs the tenants of the items.
    await expect(v.reserve('op', 3, caps(5, 2))).rejects.toThrow(/tenant/);
  });

  it('costs one Redis command for a chunk that fits under default caps', async () => {
    const r = new Redis(inject('redisUrl'));
    try {
      const v = createVelocityLimiter(r, prefix(), fakeClock().read);
      const c = caps(6_000_000, 1_000_000);
      await v.reserve('warm', 1, c); // loads the script once (EVALSHA falls back to EVAL)
      let sent = 0;
      const send = r.sendCommand.bind(r);
      r.sendCommand = (...args: Parameters<Redis['sendCommand']>) => {
        sent++;
        return send(...args);
      };
      const tenants = Array.from({ length: 500 }, (_, k) => `t${k}`);
      const g = await v.reserve('op', tenants, c);
      expect(g.granted).toBe(500);
      expect(sent).toBe(1);
      // With a hint that the operation has more tenants than the cap, the tenant cap is enforced.
      sent = 0;
      await v.reserve('op', tenants, { ...c, maxTenantsPerMinute: 100, tenantsInOperation: 1_000 });
      expect(sent).toBeGreaterThan(1);
    } finally {
      await r.quit();
    }
  });
});

describe('tenant cap (newly touched tenants)', () => {
  it('charges a tenant once per operation and grants the prefix whose new tenants fit', async () => {
    const clock = fakeClock();
    const v = createVelocityLimiter(a, prefix(), clock.read);
    const c = caps(1_000, 2);
    const g1 = await v.reserve('op', ['a', 'a', 'b', 'c', 'c', 'a'], c);
    expect(g1).toMatchObject({ granted: 3, limitedBy: 'tenants', newTenants: ['a', 'b'], waitMs: 45_000 });
    // Touched tenants pass free in the same window; a third new one does not.
    expect(await v.reserve('op', ['b', 'a', 'b'], c)).toMatchObject({ granted: 3, newTenants: [] });
    expect(await v.reserve('op', ['a', 'c'], c)).toMatchObject({ granted: 1, newTenants: [] });
    // Next window: two new tenants fit, and a and b still count as touched.
    clock.nextWindow();
    expect(await v.reserve('op', ['c', 'a', 'd', 'b', 'e'], c)).toMatchObject({
      granted: 4,
      newTenants: ['c', 'd'],
      limitedBy: 'tenants',
    });
    // Another operation touches tenants afresh.
    expect(await v.reserve('op2', ['a', 'b', 'c'], c)).toMatchObject({ granted: 2, newTenants: ['a', 'b'] });
  });

  it('gives back tenant charges for tenants the item cap left out', async () => {
    const clock = fakeClock();
    const v = createVelocityLimiter(a, prefix(), clock.read);
    const g = await v.reserve('op', ['a', 'b', 'c'], caps(2, 3));
    expect(g).toMatchObject({ granted: 2, limitedBy: 'items', newTenants: ['a', 'b'] });
    // c was not run, so it is neither touched nor charged: one tenant point is still free, and c
    // counts as new (d then does not fit).
    const h = await v.reserve('op', ['c', 'd'], caps(100, 3));
    expect(h).toMatchObject({ granted: 1, newTenants: ['c'], limitedBy: 'tenants' });
  });

  it('skips the tenant cap only where it cannot bind', async () => {
    const v = createVelocityLimiter(a, prefix(), fakeClock().read);
    // 3 tenants in the operation under a cap of 3: nothing to enforce, a count is enough.
    expect((await v.reserve('op', 5, { ...caps(100, 3), tenantsInOperation: 3 })).granted).toBe(5);
    // The default bound is the largest operation there can be.
    expect(
      (await v.reserve('op', 5, { ...caps(100, MAX_TENANTS_PER_OPERATION), tenantsInOperation: undefined })).granted,
    ).toBe(5);
    expect((await v.reserve('op', ['x', 'y', 'z', 'w'], caps(100, 3))).granted).toBe(3);
  });
});

describe('racing workers', () => {
  it('two limiters on two connections never grant more than the caps together', async () => {
    const rounds = 60;
    const rnd = fc.sample(
      fc.record({
        cap: fc.integer({ min: 1, max: 40 }),
        tenantCap: fc.integer({ min: 1, max: 6 }),
        asks: fc.array(fc.array(fc.constantFrom('t1', 't2', 't3', 't4', 't5', 't6', 't7', 't8'), { maxLength: 12 }), {
          minLength: 2,
          maxLength: 24,
        }),
      }),
      { numRuns: rounds, seed: 42 },
    );
    for (const { cap, tenantCap, asks } of rnd) {
      const clock = fakeClock();
      const p = prefix();
      const one = createVelocityLimiter(a, p, clock.read);
      const two = createVelocityLimiter(b, p, clock.read);
      const c = caps(cap, tenantCap);
      const grants = await Promise.all(asks.map((ts, k) => (k % 2 ? two : one).reserve('op', ts, c)));
      const granted = grants.reduce((s, g) => s + g.granted, 0);
      expect(granted).toBeLessThanOrEqual(cap);
      // Distinct tenants let in (all of them new: the operation had touched none) fit the cap.
      const letIn = new Set(grants.flatMap((g, k) => asks[k]!.slice(0, g.granted)));
      expect(letIn.size).toBeLessThanOrEqual(tenantCap);
      // Every tenant let in was charged by someone, and every grant's new tenants are its own.
      const charged = new Set(grants.flatMap((g) => g.newTenants));
      for (const t of letIn) expect(charged).toContain(t);
      // Give-backs all landed: what is left of the window is exactly cap - granted.
      const more = await one.reserve('op', 10_000, caps(cap, 1_000_000));
      expect(more.granted).toBe(cap - granted);
    }
  });

  it('refunds racing reserves keep the count exact', async () => {
    const clock = fakeClock();
    const p = prefix();
    const one = createVelocityLimiter(a, p, clock.read);
    const two = createVelocityLimiter(b, p, clock.read);
    const c = caps(50);
    const grants = await Promise.all(Array.from({ length: 40 }, (_, k) => (k % 2 ? two : one).reserve('op', 7, c)));
    const total = grants.reduce((s, g) => s + g.granted, 0);
    expect(total).toBeLessThanOrEqual(50);
    // Each grant gives back half of what it got, concurrently with new reserves.
    const back = grants.reduce((s, g) => s + Math.floor(g.granted / 2), 0);
    const again = await Promise.all([
      ...grants.map((g, k) => (k % 2 ? two : one).refund(g, Math.floor(g.granted / 2))),
      ...Array.from({ length: 20 }, (_, k) => (k % 2 ? one : two).reserve('op', 3, c)),
    ]);
    const more = again.filter((x): x is VelocityGrant => !!x).reduce((s, g) => s + g.granted, 0);
    expect(total - back + more).toBeLessThanOrEqual(50);
    expect((await one.reserve('op', 1_000, c)).granted).toBe(50 - (total - back + more));
  });
});

describe('matches a sequential model', () => {
  type Cmd =
    | { kind: 'reserve'; op: 'o1' | 'o2'; tenants: string[] }
    | { kind: 'refund'; pick: number; items: number }
    | { kind: 'tick'; ms: number };
  const cmd: fc.Arbitrary<Cmd> = fc.oneof(
    {
      weight: 5,
      arbitrary: fc.record({
        kind: fc.constant('reserve' as const),
        op: fc.constantFrom('o1' as const, 'o2' as const),
        tenants: fc.array(fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), { maxLength: 15 }),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('refund' as const),
        pick: fc.nat(),
        items: fc.integer({ min: 0, max: 20 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 90_000 }) }),
    },
  );

  it('grants exactly what a single-threaded fixed-window counter would', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 25 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 10 * WINDOW_MS }),
        fc.array(cmd, { maxLength: 30 }),
        async (cap, tenantCap, start, cmds) => {
          const clock = fakeClock(1_000 * WINDOW_MS + start);
          const v = createVelocityLimiter(a, prefix(), clock.read);
          const c = caps(cap, tenantCap);
          // The model: per (op, window) items and new tenants used; per op the touched tenants.
          const used = new Map<string, number>();
          const newUsed = new Map<string, number>();
          const touched = new Map<string, Set<string>>();
          const grants: { g: VelocityGrant; left: number }[] = [];
          for (const m of cmds) {
            const w = Math.floor(clock.now / WINDOW_MS);
            if (m.kind === 'tick') clock.now += m.ms;
            else if (m.kind === 'refund') {
              if (!grants.length) continue;
              const r = grants[m.pick % grants.length]!;
              await v.refund(r.g, m.items);
              const n = Math.min(m.items, r.left);
              r.left -= n;
              const key = `${r.g.opId}:${r.g.window}`;
              if (r.g.window === w) used.set(key, used.get(key)! - n);
            } else {
              const key = `${m.op}:${w}`;
              const seen = touched.get(m.op) ?? new Set<string>();
              const fresh = [...new Set(m.tenants)].filter((t) => !seen.has(t));
              const fit = Math.min(fresh.length, tenantCap - (newUsed.get(key) ?? 0));
              const prefixLen = fit < fresh.length ? m.tenants.indexOf(fresh[fit]!) : m.tenants.length;
              const granted = Math.min(prefixLen, cap - (used.get(key) ?? 0));
              const newTenants = fresh.slice(0, fit).filter((t) => m.tenants.indexOf(t) < granted);
              used.set(key, (used.get(key) ?? 0) + granted);
              newUsed.set(key, (newUsed.get(key) ?? 0) + newTenants.length);
              for (const t of newTenants) seen.add(t);
              touched.set(m.op, seen);

              const g = await v.reserve(m.op, m.tenants, c);
              expect(g).toMatchObject({
                granted,
                newTenants,
                waitMs: granted < m.tenants.length ? (w + 1) * WINDOW_MS - clock.now : 0,
              });
              grants.push({ g, left: granted });
            }
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
