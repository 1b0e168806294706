// Open event streams per token, counted in Redis so the bound holds across API replicas. Each
// stream is a member of a sorted set scored by when its lease ends; a replica that dies without
// closing its streams leaves members that lapse on their own instead of locking the token out.
import type { Redis } from 'ioredis';

const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1`;

export interface StreamSlots {
  /** False when the token already has `max` streams open. */
  acquire(tokenId: string, streamId: string): Promise<boolean>;
  /** Extends the stream's lease (called on every heartbeat). */
  renew(tokenId: string, streamId: string): Promise<void>;
  release(tokenId: string, streamId: string): Promise<void>;
}

export function streamSlots(redis: Redis, prefix: string, max: number, leaseMs: number): StreamSlots {
  const key = (tokenId: string) => `${prefix}:sse:${tokenId}`;
  return {
    async acquire(tokenId, streamId) {
      const now = Date.now();
      const ok = await redis.eval(ACQUIRE, 1, key(tokenId), now, now + leaseMs, max, streamId, leaseMs * 2);
      return ok === 1;
    },
    async renew(tokenId, streamId) {
      await redis.zadd(key(tokenId), 'XX', Date.now() + leaseMs, streamId);
    },
    async release(tokenId, streamId) {
      await redis.zrem(key(tokenId), streamId);
    },
  };
}
