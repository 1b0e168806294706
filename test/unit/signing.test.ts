import { describe, expect, it } from 'vitest';
import {
  DEFAULT_TOLERANCE_MS,
  idempotencyKeyFor,
  sign,
  signaturePayload,
  signingHost,
  verify,
} from '../../src/modules/adapters/signing.ts';
import { DESTRUCTIVE_ACTIONS, IDEMPOTENCY_KEY_PATTERN } from '../support/keys.ts';

const SECRET = 'test-signing-secret-0123456789abcdef';
const NOW = 1_760_000_000_000;
const parts = {
  timestamp: NOW,
  method: 'POST',
  host: 'apps.internal:443',
  path: '/apps/app_1/soft-delete',
  body: '{"id":"app_1","tenantId":"t1"}',
};
const input = (over: Partial<typeof parts> = {}, signature = sign(SECRET, parts)) => ({
  signature,
  timestamp: String(over.timestamp ?? parts.timestamp),
  method: over.method ?? parts.method,
  host: over.host ?? parts.host,
  path: over.path ?? parts.path,
  body: over.body ?? parts.body,
});

describe('request signature', () => {
  it('signs "v2\\n<ts>\\n<METHOD>\\n<host>\\n<path>\\n<body>" with HMAC-SHA256 as v2=<hex>', () => {
    expect(signaturePayload({ ...parts, method: 'post' })).toBe(
      `v2\n${NOW}\nPOST\napps.internal:443\n/apps/app_1/soft-delete\n{"id":"app_1","tenantId":"t1"}`,
    );
    expect(sign(SECRET, parts)).toMatch(/^v2=[0-9a-f]{64}$/);
    expect(sign(SECRET, parts)).toBe(sign(SECRET, { ...parts }));
  });

  it('verifies an untouched request', () => {
    expect(verify(SECRET, input(), { now: NOW })).toBe(true);
  });

  it.each([
    ['body', { body: '{"id":"app_2","tenantId":"t1"}' }],
    ['path', { path: '/apps/app_2/soft-delete' }],
    ['method', { method: 'DELETE' }],
    ['timestamp', { timestamp: NOW + 1 }],
    ['host (a signature made for another system)', { host: 'billing.internal:443' }],
    ['port of the host', { host: 'apps.internal:8443' }],
  ])('rejects a tampered %s', (_, over) => {
    expect(verify(SECRET, input(over), { now: NOW })).toBe(false);
  });

  it('rejects another secret, a missing or malformed header and a stale timestamp', () => {
    expect(verify('another-secret-0123456789abcdef0123', input(), { now: NOW })).toBe(false);
    expect(verify(SECRET, { ...input(), signature: undefined }, { now: NOW })).toBe(false);
    expect(verify(SECRET, { ...input(), timestamp: undefined }, { now: NOW })).toBe(false);
    expect(verify(SECRET, { ...input(), timestamp: 'yesterday' }, { now: NOW })).toBe(false);
    expect(verify(SECRET, { ...input(), signature: 'v1=abc' }, { now: NOW })).toBe(false);
    // A v1 MAC (no host in it) over the same request is not a v2 signature.
    const v1 = sign(SECRET, parts).replace('v2=', 'v1=');
    expect(verify(SECRET, { ...input(), signature: v1 }, { now: NOW })).toBe(false);
    expect(verify(SECRET, input(), { now: NOW + DEFAULT_TOLERANCE_MS + 1 })).toBe(false);
    expect(verify(SECRET, input(), { now: NOW - DEFAULT_TOLERANCE_MS - 1 })).toBe(false);
    expect(verify(SECRET, input(), { now: NOW + DEFAULT_TOLERANCE_MS })).toBe(true);
  });
});

describe('signed host', () => {
  it('is <hostname>:<port> with the default port written out and the hostname as the URL parser writes it', () => {
    expect(signingHost(new URL('https://Apps.Internal/api'))).toBe('apps.internal:443');
    expect(signingHost(new URL('http://apps.internal'))).toBe('apps.internal:80');
    expect(signingHost(new URL('http://127.0.0.1:8080/x'))).toBe('127.0.0.1:8080');
    expect(signingHost(new URL('http://[::1]:9000'))).toBe('[::1]:9000');
    expect(signingHost(new URL('https://apps.internal:443'))).toBe('apps.internal:443');
  });
});

describe('idempotency key', () => {
  const item = { operationId: 'op_1', resourceId: 'app_1' };

  it('has the documented format for every action and is deterministic', () => {
    for (const action of DESTRUCTIVE_ACTIONS) {
      const key = idempotencyKeyFor(item, action);
      expect(key).toMatch(IDEMPOTENCY_KEY_PATTERN);
      expect(key.startsWith(`bg1-${action}-`)).toBe(true);
      expect(idempotencyKeyFor({ ...item }, action)).toBe(key);
    }
  });

  it('is unique per (operation, item, action)', () => {
    const keys = new Set<string>();
    for (const operationId of ['op_1', 'op_2']) {
      for (const resourceId of ['app_1', 'app_2', 'app_10']) {
        for (const action of DESTRUCTIVE_ACTIONS) keys.add(idempotencyKeyFor({ operationId, resourceId }, action));
      }
    }
    expect(keys.size).toBe(2 * 3 * 3);
  });

  it('cannot be made to collide by moving a separator between the IDs', () => {
    expect(idempotencyKeyFor({ operationId: 'op:1', resourceId: 'a' }, 'softDelete')).not.toBe(
      idempotencyKeyFor({ operationId: 'op', resourceId: '1:a' }, 'softDelete'),
    );
    expect(idempotencyKeyFor({ operationId: 'op', resourceId: 'a-softDelete' }, 'restore')).not.toBe(
      idempotencyKeyFor({ operationId: 'op', resourceId: 'a-restore' }, 'softDelete'),
    );
  });

  it('stays short whatever the ID length', () => {
    expect(
      idempotencyKeyFor({ operationId: 'op', resourceId: 'x'.repeat(10_000) }, 'hardDelete').length,
    ).toBeLessThanOrEqual(60);
  });
});
