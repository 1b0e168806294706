// How the CLI prints a server's error: a 5xx says "see the server log with this requestId", so the
// requestId is printed with it (text and --json); a client error's stays out of the way.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { apiError } from '../../src/cli/http.ts';
import { reportError } from '../../src/cli/output.ts';

function printed(err: unknown, json: boolean) {
  let text = '';
  const stderr = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  const code = reportError(err, json, stderr as unknown as typeof process.stderr);
  return { code, text };
}

describe('CLI error output', () => {
  const internal = () =>
    apiError(500, {
      code: 'INTERNAL',
      message: 'Internal error; see the server log with this requestId',
      details: null,
      requestId: 'req-7f3a',
    });

  it('prints the requestId of a 5xx, which its message sends the operator to', () => {
    const { code, text } = printed(internal(), false);
    expect(code).toBe(1);
    expect(text).toBe(
      'blastgate: 500 INTERNAL: Internal error; see the server log with this requestId\n  requestId: req-7f3a\n',
    );
  });

  it('keeps it in --json', () => {
    const doc = JSON.parse(printed(internal(), true).text) as { error: Record<string, unknown> };
    expect(doc.error).toMatchObject({ code: 'INTERNAL', status: 500, requestId: 'req-7f3a' });
  });

  it("leaves it out of a client error's text", () => {
    const err = apiError(404, { code: 'NOT_FOUND', message: 'Operation op_x does not exist', requestId: 'req-1' });
    expect(printed(err, false).text).toBe('blastgate: 404 NOT_FOUND: Operation op_x does not exist\n');
  });
});

describe('a rejected restore in the CLI', () => {
  it('names the delete an uncertain ID awaits, and never calls it held', () => {
    const err = apiError(422, {
      code: 'PLAN_REJECTED',
      message: 'The operation was rejected: 1 ID whose delete may or may not have happened …',
      details: {
        operationId: 'op_r',
        reportUrl: '/v1/operations/op_r/report',
        counts: { ok: 1, uncertain: 1 },
        offenders: { uncertain: [{ index: 1, id: 'app_1', class: 'uncertain', deletedBy: 'op_d' }] },
      },
    });
    const { text } = printed(err, false);
    expect(text).toContain(
      'uncertain: 1  e.g. app_1 (its delete by op_d may have happened: roll that back to restore it)',
    );
    expect(text).not.toContain('held by');
  });
});
