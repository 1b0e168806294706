// A worker's errors in the log: a lost job lock (expected after Redis was away) is one warning line
// without a stack; any other error keeps its stack.
import { describe, expect, it } from 'vitest';
import { logWorkerError } from '../../src/modules/execution/consumers.ts';

function capture() {
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  const at = (level: string) => (obj: Record<string, unknown>, msg: string) => void lines.push({ level, obj, msg });
  return { lines, logger: { warn: at('warn'), error: at('error') } as never };
}

describe('worker error log', () => {
  it('says a lost lock once, with its message and no stack', () => {
    const { lines, logger } = capture();
    logWorkerError(logger, new Error('Missing lock for job op_1.e3.wave.2.chunk.7. moveToFinished'));
    expect(lines).toEqual([
      {
        level: 'warn',
        obj: { detail: 'Missing lock for job op_1.e3.wave.2.chunk.7. moveToFinished' },
        msg: expect.stringContaining("a job's lock was lost"),
      },
    ]);
    expect(JSON.stringify(lines)).not.toContain('at ');
  });

  it('keeps the error (and its stack) for anything else', () => {
    const { lines, logger } = capture();
    const err = new Error('connection terminated unexpectedly');
    logWorkerError(logger, err);
    expect(lines).toEqual([{ level: 'error', obj: { err }, msg: 'worker error' }]);
  });
});
