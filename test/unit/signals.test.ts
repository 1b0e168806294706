// One press, counted once: a repeat of the signal within SAME_PRESS_MS is the same Ctrl-C (npm
// forwarding it); a later one is the operator asking to exit now.
import { describe, expect, it } from 'vitest';
import { SAME_PRESS_MS, signalCounter } from '../../src/lib/signals.ts';

describe('signalCounter', () => {
  it.each([
    ['one signal', [0], ['first']],
    ['the same press twice (npm forwards it)', [0, 5], ['first']],
    ['a press, then the operator again', [0, 5, SAME_PRESS_MS + 1], ['first', 'again']],
    ['each later press asks again', [0, SAME_PRESS_MS, SAME_PRESS_MS * 3], ['first', 'again', 'again']],
  ])('%s', (_name, times, expected) => {
    const seen: string[] = [];
    let t = 0;
    const onSignal = signalCounter(
      () => seen.push('first'),
      () => seen.push('again'),
      () => t,
    );
    for (const at of times) {
      t = at;
      onSignal('SIGINT');
    }
    expect(seen).toEqual(expected);
  });
});
