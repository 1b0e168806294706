// The limits that keep the API answering are validated with the rest of the configuration, naming
// the variable, and the handler timeout must leave room for the request timeout.
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_LIMITS, loadConfig } from '../../src/config.ts';

const problems = (env: Record<string, string>) => {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
};

describe('limits', () => {
  it('defaults', () => {
    expect(loadConfig({}).limits).toEqual(DEFAULT_LIMITS);
    expect(DEFAULT_LIMITS).toMatchObject({
      requestTimeoutMs: 120_000,
      handlerTimeoutMs: 300_000,
      dbReadTimeoutMs: 10_000,
      dbPoolMax: 20,
      dbControlPoolMax: 4,
      dbUploadPoolMax: 4,
      rateLimitMax: 600,
      rateLimitControlMax: 300,
      rateLimitWindowMs: 60_000,
      maxEventLoopDelayMs: 500,
      maxEventLoopUtilization: 0,
    });
  });

  it('reads every variable', () => {
    const env = {
      BLASTGATE_REQUEST_TIMEOUT_MS: '30000',
      BLASTGATE_HANDLER_TIMEOUT_MS: '60000',
      BLASTGATE_DB_READ_TIMEOUT_MS: '2500',
      BLASTGATE_DB_POOL_MAX: '30',
      BLASTGATE_DB_CONTROL_POOL_MAX: '2',
      BLASTGATE_DB_UPLOAD_POOL_MAX: '8',
      BLASTGATE_RATE_LIMIT_MAX: '100',
      BLASTGATE_RATE_LIMIT_CONTROL_MAX: '50',
      BLASTGATE_RATE_LIMIT_WINDOW_MS: '10000',
      BLASTGATE_MAX_EVENT_LOOP_DELAY_MS: '0',
      BLASTGATE_MAX_EVENT_LOOP_UTILIZATION: '0.95',
      BLASTGATE_SSE_MAX_PER_TOKEN: '4',
      BLASTGATE_SSE_HEARTBEAT_MS: '5000',
    };
    expect(loadConfig(env).limits).toEqual({
      requestTimeoutMs: 30_000,
      handlerTimeoutMs: 60_000,
      dbReadTimeoutMs: 2_500,
      dbPoolMax: 30,
      dbControlPoolMax: 2,
      dbUploadPoolMax: 8,
      rateLimitMax: 100,
      rateLimitControlMax: 50,
      rateLimitWindowMs: 10_000,
      maxEventLoopDelayMs: 0,
      maxEventLoopUtilization: 0.95,
      sseMaxPerToken: 4,
      sseHeartbeatMs: 5_000,
    });
  });

  it('rejects invalid values with the variable named', () => {
    expect(
      problems({
        BLASTGATE_REQUEST_TIMEOUT_MS: '10',
        BLASTGATE_DB_CONTROL_POOL_MAX: '0',
        BLASTGATE_RATE_LIMIT_MAX: 'lots',
        BLASTGATE_MAX_EVENT_LOOP_UTILIZATION: '1.5',
      }),
    ).toEqual([
      'BLASTGATE_REQUEST_TIMEOUT_MS must be an integer from 1000 to 3600000 (got "10")',
      'BLASTGATE_DB_CONTROL_POOL_MAX must be an integer from 1 to 100 (got "0")',
      'BLASTGATE_RATE_LIMIT_MAX must be an integer from 1 to 1000000 (got "lots")',
      'BLASTGATE_MAX_EVENT_LOOP_UTILIZATION must be a number from 0 to 1 (got "1.5")',
    ]);
  });

  it('takes integers and fractions only as plain decimals (an exponent, hex or a fraction part is refused); surrounding blanks are trimmed', () => {
    expect(
      problems({
        PORT: '1e3',
        BLASTGATE_WORKER_CONCURRENCY: '0x10',
        BLASTGATE_RATE_LIMIT_MAX: '4.0',
        BLASTGATE_MAX_EVENT_LOOP_UTILIZATION: '9e-1',
      }),
    ).toEqual([
      'PORT must be an integer from 0 to 65535 (got "1e3")',
      'BLASTGATE_WORKER_CONCURRENCY must be an integer from 1 to 256 (got "0x10")',
      'BLASTGATE_RATE_LIMIT_MAX must be an integer from 1 to 1000000 (got "4.0")',
      'BLASTGATE_MAX_EVENT_LOOP_UTILIZATION must be a number from 0 to 1 (got "9e-1")',
    ]);
    expect(loadConfig({ PORT: ' 3001 ', BLASTGATE_MAX_EVENT_LOOP_UTILIZATION: '.5' }).port).toBe(3001);
    expect(loadConfig({ BLASTGATE_MAX_EVENT_LOOP_UTILIZATION: '0.5' }).limits.maxEventLoopUtilization).toBe(0.5);
  });

  it('a separate worker lowers its priority to nice 10 unless told otherwise (0–19)', () => {
    expect(loadConfig({}).workerNice).toBe(10);
    expect(loadConfig({ BLASTGATE_WORKER_NICE: '0' }).workerNice).toBe(0);
    expect(problems({ BLASTGATE_WORKER_NICE: '-5' })).toEqual([
      'BLASTGATE_WORKER_NICE must be an integer from 0 to 19 (got "-5")',
    ]);
    expect(problems({ BLASTGATE_WORKER_NICE: '20' })).toEqual([
      'BLASTGATE_WORKER_NICE must be an integer from 0 to 19 (got "20")',
    ]);
  });

  it('the handler timeout must be longer than the request timeout', () => {
    expect(problems({ BLASTGATE_REQUEST_TIMEOUT_MS: '60000', BLASTGATE_HANDLER_TIMEOUT_MS: '60000' })).toEqual([
      'BLASTGATE_HANDLER_TIMEOUT_MS (60000) must be longer than BLASTGATE_REQUEST_TIMEOUT_MS (60000): a request is answered after it was received',
    ]);
  });
});
