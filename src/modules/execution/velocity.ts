// Velocity caps shared by every worker: per operation, at most `maxItemsPerMinute` items and at
// most `maxTenantsPerMinute` newly touched tenants per one-minute window, enforced in Redis with
// rate-limiter-flexible's atomic RateLimiterRedis (one Lua INCRBY+TTL per charge).
//
// Contract (what a chunk job does):
//   const g = await limiter.reserve(opId, items.map((i) => i.tenantId), caps);
//   run items[0 .. g.granted)  — the grant is always a PREFIX of the list, in the order given;
//   if g.granted < items.length: leave the rest for later and retry them after g.waitMs;
//   afterwards: await limiter.refund(g, itemsThatMadeNoDestructiveCall) — caps charge executed
//   items only (skipped, unsent, never-claimed items are given back).
//
// Semantics:
// - Fixed windows: window = Math.floor(clock() / 60_000), decided by the injected clock (tests do
//   not wait for real minutes; waitMs is computed from it too). The Redis TTL (KEY_TTL_S) only
//   garbage-collects old window counters. Being a fixed window, up to 2× a cap can run across a
//   window boundary (the end of one minute and the start of the next). Workers whose clocks differ
//   may be in different windows for the skew; each window's own counter is still never over-granted.
// - Partial grants: a request that does not fit gets what is left in the window (possibly 0) and
//   waitMs = time until the next window. A request larger than the whole cap is therefore never
//   wedged: a 500-item list under a 100/min cap runs as 100 per window over 5 windows.
// - Atomic across processes: each charge is an atomic INCRBY; when the total passes the cap the
//   part that did not fit is given back (reward). Two workers racing for the last points never
//   get more than the cap together. A racer may briefly see the other's not-yet-returned excess
//   and be granted less than was free (it then waits for the next window): under-granting, never
//   over-granting.
// - Newly touched tenants: a tenant counts once per operation, ever: the first grant that lets one
//   of its items run charges it in that window and adds it to a per-operation Redis set
//   (TOUCHED_TTL_MS, refreshed on every add); later items of that tenant pass free. The check
//   (SMISMEMBER) and the add (SADD, after the charge) are not one atomic step, so two workers that
//   both see a tenant as new both charge it: OVER-CHARGING in a race, accepted. Over-granting is
//   impossible: a tenant enters the set only after a charge by the worker that adds it. Tenant
//   charges are not refundable (refund() gives back items only): the set cannot safely forget a
//   tenant another worker may already rely on. A tenant whose items all get refunded stays charged.
// - Cost: when the tenant cap cannot bind (no more tenants can exist in one operation than the cap
//   allows, see tenantCapCanBind) tenants are not looked at: one Redis round trip per reserve()
//   when everything fits, two on a partial grant. A binding tenant cap adds SMISMEMBER, one charge
//   and one SADD.
import type { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { MAX_INLINE_IDS, MAX_STREAMED_IDS } from '../operations/intake.ts';

export const WINDOW_MS = 60_000;
/** Window counters outlive their window by two minutes, so refunds and skewed clocks find them. */
const KEY_TTL_S = 180;
/** The per-operation set of touched tenants; refreshed whenever a tenant is added. */
const TOUCHED_TTL_MS = 30 * 86_400_000;
/** No operation holds more IDs, hence more items or tenants, than this. */
export const MAX_TENANTS_PER_OPERATION = Math.max(MAX_INLINE_IDS, MAX_STREAMED_IDS);

export interface VelocityCaps {
  maxItemsPerMinute: number;
  maxTenantsPerMinute: number;
  /** Optional upper bound on the operation's distinct tenants (from its plan); a cap at or above
   *  it cannot bind and is skipped. Defaults to the most an operation can hold. */
  tenantsInOperation?: number;
}

export interface VelocityGrant {
  opId: string;
  /** The window (Math.floor(clock() / WINDOW_MS)) charged. */
  window: number;
  /** How many items asked for. */
  requested: number;
  /** Run items [0, granted) of the list now. */
  granted: number;
  /** 0 when everything was granted; otherwise ms (by the limiter's clock) until the next window. */
  waitMs: number;
  /** Which cap cut the grant short, if one did. */
  limitedBy: 'items' | 'tenants' | null;
  /** Tenants this grant charged as newly touched (now in the operation's touched set). */
  newTenants: string[];
}

export interface VelocityLimiter {
  /**
   * Reserves items for opId in the current window. `items` is either the tenant of each item, in
   * the order the caller would run them (needed when tenantCapCanBind(caps)), or just a count.
   * Grants a prefix: see the file header. Throws on Redis errors (nothing granted then).
   */
  reserve(opId: string, items: readonly string[] | number, caps: VelocityCaps): Promise<VelocityGrant>;
  /**
   * Gives back `items` of a grant that made no destructive call. Clamped to what the grant has not
   * yet given back; a no-op once the grant's window is over (its points would serve no one, and
   * a late decrement could outlive the counter). On a Redis error it throws and may be retried.
   */
  refund(grant: VelocityGrant, items: number): Promise<void>;
}

/** Before items handed back unsent are tried again while the operation still runs the wave. */
export const REQUEUE_DELAY_MS = 50;
/**
 * A chunk held back by a velocity cap asks again at least this often, rather than sleeping until
 * the window it was told about: the limiter's clock decides, and a cap raised meanwhile applies.
 */
const VELOCITY_RECHECK_MS = 5_000;

/** When a chunk that was granted fewer items than it asked for tries the rest again. */
export const deferForCap = (g: Pick<VelocityGrant, 'waitMs'>) =>
  Math.min(VELOCITY_RECHECK_MS, Math.max(REQUEUE_DELAY_MS, g.waitMs));

/** Whether the tenant cap can ever bind; when not, reserve() accepts a bare item count. */
export function tenantCapCanBind(caps: VelocityCaps): boolean {
  return caps.maxTenantsPerMinute < (caps.tenantsInOperation ?? MAX_TENANTS_PER_OPERATION);
}

export function createVelocityLimiter(redis: Redis, prefix: string, clock: () => number = Date.now): VelocityLimiter {
  const keyPrefix = `${prefix}:velocity`;
  // A RateLimiterRedis compares against its own `points`, so one instance per cap value. ioredis is
  // the library's default client (useRedisPackage is for node-redis v4+), passed as storeClient.
  const limiters = new Map<number, RateLimiterRedis>();
  const limiterFor = (cap: number) => {
    let l = limiters.get(cap);
    if (!l) {
      if (limiters.size >= 64) limiters.clear();
      l = new RateLimiterRedis({ storeClient: redis, keyPrefix, points: cap, duration: KEY_TTL_S });
      limiters.set(cap, l);
    }
    return l;
  };
  const itemsKey = (opId: string, window: number) => `items:${opId}:${window}`;
  const tenantsKey = (opId: string, window: number) => `tenants:${opId}:${window}`;
  const touchedKey = (opId: string) => `${keyPrefix}:touched:${opId}`;
  /** What refund() may still give back, per grant. */
  const refundable = new WeakMap<VelocityGrant, number>();

  /** Charges up to n points atomically; returns how many fit (the rest is given back). */
  async function take(cap: number, key: string, n: number): Promise<number> {
    const limiter = limiterFor(cap);
    try {
      await limiter.consume(key, n);
      return n;
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      // This charge made the counter consumedPoints; only what lies at or below the cap fits.
      const over = Math.min(n, err.consumedPoints - cap);
      if (!(over > 0))
        throw new Error(`velocity: unexpected rejection at ${err.consumedPoints}/${cap}`, { cause: err });
      await limiter.reward(key, over);
      return n - over;
    }
  }

  return {
    async reserve(opId, items, caps) {
      checkCap(caps.maxItemsPerMinute, 'maxItemsPerMinute');
      checkCap(caps.maxTenantsPerMinute, 'maxTenantsPerMinute');
      const now = clock();
      const window = Math.floor(now / WINDOW_MS);
      const requested = typeof items === 'number' ? items : items.length;
      if (!Number.isInteger(requested) || requested < 0) throw new Error(`velocity: bad item count ${requested}`);
      const grant = (granted: number, limitedBy: VelocityGrant['limitedBy'], newTenants: string[]) => {
        const g: VelocityGrant = {
          opId,
          window,
          requested,
          granted,
          waitMs: granted < requested ? Math.max(1, (window + 1) * WINDOW_MS - now) : 0,
          limitedBy: granted < requested ? limitedBy : null,
          newTenants,
        };
        refundable.set(g, granted);
        return g;
      };
      if (requested === 0) return grant(0, null, []);

      // The tenant cap: the longest prefix whose new tenants fit.
      let prefix = requested;
      let charged = 0;
      let fresh: string[] = [];
      const firstAt = new Map<string, number>();
      if (tenantCapCanBind(caps)) {
        if (typeof items === 'number')
          throw new Error('velocity: the tenant cap can bind, so reserve() needs the tenant of each item');
        items.forEach((t, k) => {
          if (!firstAt.has(t)) firstAt.set(t, k);
        });
        const distinct = [...firstAt.keys()];
        const seen = await redis.smismember(touchedKey(opId), ...distinct);
        fresh = distinct.filter((_, k) => !seen[k]); // in order of first appearance
        if (fresh.length) {
          charged = await take(caps.maxTenantsPerMinute, tenantsKey(opId, window), fresh.length);
          if (charged < fresh.length) prefix = firstAt.get(fresh[charged]!)!;
        }
      }

      const granted = prefix > 0 ? await take(caps.maxItemsPerMinute, itemsKey(opId, window), prefix) : 0;

      // New tenants with an item inside the granted prefix (a prefix of `fresh`); the others were
      // charged for nothing and go back before anyone can see them as touched.
      const used = fresh.slice(0, charged).filter((t) => firstAt.get(t)! < granted);
      if (charged > used.length) await limiterFor(1).reward(tenantsKey(opId, window), charged - used.length);
      if (used.length) {
        const res = await redis
          .multi()
          .sadd(touchedKey(opId), ...used)
          .pexpire(touchedKey(opId), TOUCHED_TTL_MS)
          .exec();
        const failed = res?.find(([e]) => e);
        if (!res || failed) throw failed?.[0] ?? new Error('velocity: touched-tenant update aborted');
      }
      return grant(granted, granted < prefix ? 'items' : 'tenants', used);
    },

    async refund(grant, items) {
      const left = refundable.get(grant) ?? 0;
      const n = Math.min(Math.max(0, Math.floor(items)), left);
      if (n === 0) return;
      refundable.set(grant, left - n);
      if (Math.floor(clock() / WINDOW_MS) !== grant.window) return;
      try {
        await limiterFor(1).reward(itemsKey(grant.opId, grant.window), n);
      } catch (err) {
        refundable.set(grant, (refundable.get(grant) ?? 0) + n);
        throw err;
      }
    },
  };
}

function checkCap(cap: number, name: string) {
  if (!Number.isInteger(cap) || cap < 1) throw new Error(`velocity: ${name} must be a positive integer, got ${cap}`);
}
