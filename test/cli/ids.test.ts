// The CLI reads ID lists and JSON arguments by the server's rules, and names the user's own lines.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { intArg, jsonArg } from '../../src/cli/context.ts';
import { CliError, EXIT } from '../../src/cli/exit-codes.ts';
import { collectIds, inListLines, ListLines, MAX_LINE_BYTES, ndjsonBody, type IdStats } from '../../src/cli/ids.ts';
import { STREAM_LIMITS } from '../../src/modules/operations/submission.ts';
import { rejectionLines } from '../../src/cli/output.ts';
import { jsonError, runCli } from '../support/cli.ts';

const list = (text: string) => Readable.from([Buffer.from(text)]);
const refusal = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CliError);
  return err as CliError;
};

describe('collectIds (restore, purge and queue lists, sent inline)', () => {
  it('reads "id" and {"id": …} lines, skipping blank ones', async () => {
    expect(await collectIds(list('"a"\n\n  \n{"id":"b"}\r\nc\n'), 10)).toEqual(['a', 'b', 'c']);
  });

  it.each([
    ['{"id":"app_9","id":"app_41"}', 'gives the key "id" more than once'],
    ['{"id":"app_41","extra":1}', 'must be "id" or {"id": "..."}'],
    ['{"id":7}', 'must be "id" or {"id": "..."}'],
    ['{oops', 'is not valid JSON'],
  ])('refuses %s naming the line of the list', async (bad, why) => {
    const err = await refusal(collectIds(list(`"a"\n\n${bad}\n"b"\n`), 10));
    expect(err.exitCode).toBe(EXIT.usage);
    expect(err.message).toBe(`line 3 of the ID list ${why}`);
    expect(err.details).toEqual({ line: 3 });
  });
});

describe('ndjsonBody', () => {
  it('keeps a byte order mark that starts a later line (the server refuses it in an ID)', async () => {
    let body = '';
    for await (const c of ndjsonBody(list('app_2\n\ufeffapp_1\n'), null, 'auto')) body += Buffer.from(c).toString();
    expect(body).toBe('"app_2"\n"\ufeffapp_1"\n');
  });
});

describe('jsonArg (--rollout, --halt-policy)', () => {
  it('refuses a key given twice, as the server would', () => {
    expect(() => jsonArg('--rollout')('{"waves":["100%"],"bakeSeconds":0,"bakeSeconds":600}')).toThrow(
      '--rollout gives the key "bakeSeconds" more than once',
    );
    expect(jsonArg('--rollout')('{"bakeSeconds":0}')).toEqual({ bakeSeconds: 0 });
    expect(() => jsonArg('--rollout')('[1]')).toThrow('--rollout must be a JSON object');
  });
});

describe('inListLines', () => {
  it("says every mention of the body's line as the list's own", () => {
    const server = new CliError(
      1,
      'DUPLICATE_KEY',
      'Line 5 gives the key "a" more than once (in id); which one was meant cannot be told, so nothing was read',
      { field: 'line 5.id', key: 'a', line: 5 },
      400,
    );
    const own = inListLines(server) as CliError;
    expect(own.message).toMatch(/^Line 4 of the ID list gives the key "a" more than once \(in id\)/);
    expect(own.details).toEqual({ field: 'line 4.id', key: 'a', line: 4 });
    // The CLI's own errors already count the list's lines.
    const local = new CliError(EXIT.usage, 'INVALID_UTF8', 'line 2 of the ID list is not valid UTF-8', { line: 2 });
    expect(inListLines(local)).toBe(local);
  });
});

describe('the list line of an ID the server names by index', () => {
  const read = async (text: string) => {
    const stats: IdStats = { lines: 0, ids: 0, blanks: new ListLines() };
    for await (const chunk of ndjsonBody(list(text), null, 'auto', stats)) void chunk;
    return stats.blanks!;
  };

  it('counts the blank lines before each ID, in runs', async () => {
    const where = await read('\n"a"\n\n\n  \nb\n{"id":"c"}\n\nd\n');
    // a on line 2, b on line 6, c on line 7, d on line 9.
    expect([0, 1, 2, 3].map((i) => where.lineOf(i))).toEqual([2, 6, 7, 9]);
    expect((await read('a\nb\n')).lineOf(1)).toBe(2);
  });

  it("adds the list's line to INVALID_IDS entries and its message, and to a rejection's offenders", async () => {
    const where = await read('a\n\nb b\nc\n');
    const invalid = new CliError(
      1,
      'INVALID_IDS',
      '1 submitted ID(s) are not valid; the first, at index 1, contains a blank',
      { invalidCount: 1, invalid: [{ index: 1, id: 'b b', problem: 'contains a blank' }] },
      400,
    );
    const own = inListLines(invalid, where) as CliError;
    expect(own.message).toBe(
      '1 submitted ID(s) are not valid; the first, at index 1 (line 3 of the ID list), contains a blank',
    );
    expect(own.details).toEqual({
      invalidCount: 1,
      invalid: [{ index: 1, line: 3, id: 'b b', problem: 'contains a blank' }],
    });
    const rejected = new CliError(
      10,
      'PLAN_REJECTED',
      'The operation was rejected: 1 ID not in the registry (unknown).',
      { counts: { ok: 2, unknown: 1 }, offenders: { unknown: [{ index: 2, id: 'c', actualType: null }] } },
      422,
    );
    const mapped = inListLines(rejected, where) as CliError;
    expect(mapped.details).toMatchObject({ offenders: { unknown: [{ index: 2, line: 4, id: 'c' }] } });
    expect(rejectionLines(mapped).join('\n')).toContain('c (line 4)');
  });

  it('names the descendant a listed ID is rejected for', () => {
    const rejected = new CliError(10, 'PLAN_REJECTED', 'The operation was rejected.', {
      counts: { ok: 0, protected: 1 },
      offenders: { protected: [{ index: 0, id: 'site_5', via: { id: 'app_9', type: 'app', tenantId: 'tenant_2' } }] },
    });
    expect(rejectionLines(rejected).join('\n')).toContain('site_5 (for app app_9 of tenant_2, which it takes along)');
  });

  it("names a restore's deleted parent as the parent, not as something it takes along (a trial)", () => {
    const rejected = new CliError(10, 'PLAN_REJECTED', 'The restore was rejected.', {
      counts: { ok: 0, parent_deleted: 1 },
      offenders: {
        parent_deleted: [{ index: 0, id: 'app_300', via: { id: 'site_3', type: 'site', tenantId: 't_c' } }],
      },
    });
    const text = rejectionLines(rejected).join('\n');
    expect(text).toContain('app_300 (its parent site site_3 of t_c is deleted: restore it first, or with it)');
    expect(text).not.toContain('takes along');
  });

  it('says what to do when the IDs came from a tenant or an operation scope, not "fix the list" (a trial)', () => {
    const rejected = new CliError(10, 'PLAN_REJECTED', 'The restore was rejected.', {
      counts: { ok: 2, parent_deleted: 1 },
      offenders: { parent_deleted: [{ index: 0, id: 'app_5', via: { id: 'site_1', type: 'site', tenantId: 't_a' } }] },
      dryRun: true,
    });
    rejected.fromScope = true;
    const text = rejectionLines(rejected).join('\n');
    expect(text).toContain('These come from the scope, not a list');
    expect(text).not.toContain('Fix the list');
  });

  it('says that purged and erased resources can never be restored, not "fix the list" (a trial)', () => {
    const gone = new CliError(10, 'PLAN_REJECTED', 'The restore was rejected.', {
      counts: { ok: 1, purged: 1, erased: 1 },
      offenders: { purged: [{ index: 0, id: 'app_1' }], erased: [{ index: 1, id: 'app_2' }] },
    });
    const text = rejectionLines(gone).join('\n');
    expect(text).toContain('They can never be restored (purged, erased): leave them out of the list');
    expect(text).not.toContain('Fix the list');
  });

  it('says that a restore settles what may be live again (restore_uncertain), not a parent to restore (a trial)', () => {
    const rejected = new CliError(10, 'PLAN_REJECTED', 'The purge was rejected.', {
      counts: { ok: 0, restore_uncertain: 1 },
      offenders: { restore_uncertain: [{ index: 0, id: 'app_12', actualType: 'app' }] },
    });
    const text = rejectionLines(rejected).join('\n');
    expect(text).toContain('they may be live again: restore them again to settle it (blastgate restore)');
    expect(text).not.toContain('Fix the list');
  });

  it('says when the retention ends instead of "fix the list" for a purge asked for too early', () => {
    const early = (counts: Record<string, number>, offenders: object) =>
      rejectionLines(new CliError(10, 'PLAN_REJECTED', 'The purge was rejected.', { counts, offenders })).join('\n');
    const retained = {
      within_retention: [
        { index: 0, id: 'app_2', purgeAfter: '2026-12-07T00:00:00.000Z' },
        { index: 1, id: 'app_1', purgeAfter: '2026-12-06T00:00:00.000Z' },
      ],
    };
    const only = early({ ok: 0, within_retention: 2 }, retained);
    expect(only).toContain('Their retention has not ended (the first ends 2026-12-06T00:00:00.000Z)');
    expect(only).not.toContain('Fix the list');
    // Another class beside it: the list (or scope) is what to change.
    const mixed = early({ ok: 0, within_retention: 2, unknown: 1 }, { ...retained, unknown: [{ index: 2, id: 'x' }] });
    expect(mixed).toContain('Fix the list');
  });
});

describe('an empty ID list', () => {
  // Nothing listens on port 1: a request would fail as a network error (exit 1), so exit 2 shows
  // that the list was refused before anything was sent, over REST and through the queue alike.
  const DEAD = { url: 'http://127.0.0.1:1', token: 'bg_unused', env: { BLASTGATE_REDIS_URL: 'redis://127.0.0.1:1' } };
  const spec = ['--type', 'app', '--reason', 'Remove the legacy app', '--ticket', 'CHG-1'];

  it.each([
    ['submit', '', []],
    ['submit', '\n  \n\r\n', []],
    ['submit --via-queue', '\n  \n\r\n', ['--via-queue']],
    ['plan', '\n', []],
  ])('%s, input %j: a usage error (exit 2) before anything is sent', async (label, input, flags) => {
    const command = label.split(' ')[0]!;
    const r = await runCli(['--json', command, ...spec, ...flags], { ...DEAD, input });
    expect(r.code, r.stderr).toBe(EXIT.usage);
    expect(jsonError(r)).toEqual({
      error: { code: 'USAGE', message: 'the ID list is empty' },
      exitCode: EXIT.usage,
    });
  });
});

describe('watch --after', () => {
  it.each(['abc', '-5', '1.5'])('%j is a usage error (exit 2) before anything is sent', async (after) => {
    // Nothing listens on port 1: a request would fail as a network error (exit 1).
    const r = await runCli(['--json', 'watch', 'op_1', '--after', after], { url: 'http://127.0.0.1:1', token: 'bg_x' });
    expect(r.code, r.stderr).toBe(EXIT.usage);
    expect(jsonError(r).error).toMatchObject({ code: 'USAGE', message: expect.stringContaining('--after must be') });
  });
});

describe('intArg (--bake-seconds, --concurrency)', () => {
  it('says what a whole number here is: -5 is one, but not 0 or more (a new-user trial)', () => {
    expect(intArg('--bake-seconds')('30')).toBe(30);
    expect(() => intArg('--bake-seconds')('-5')).toThrow('--bake-seconds must be a whole number, 0 or more (got "-5")');
    expect(() => intArg('--bake-seconds')('1.5')).toThrow('must be a whole number, 0 or more (got "1.5")');
    // As the server takes it: --concurrency 0 passed here, then the server refused it (trial L).
    expect(() => intArg('--concurrency', 1)('0')).toThrow('--concurrency must be a whole number, 1 or more (got "0")');
    expect(intArg('--concurrency', 1)('1')).toBe(1);
  });
});

describe('MAX_LINE_BYTES', () => {
  it("is the server's line limit for streamed IDs", () => {
    expect(MAX_LINE_BYTES).toBe(STREAM_LIMITS.maxLineBytes);
  });
});
