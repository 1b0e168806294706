// BLASTGATE_PURGE_PROPOSAL_CRON is checked at start-up: daily by default, `off` disables, and an
// expression the cron parser refuses stops the process with a message naming the variable.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';

const problems = (env: NodeJS.ProcessEnv) => {
  try {
    loadConfig(env);
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
};

describe('BLASTGATE_PURGE_PROPOSAL_CRON', () => {
  it('defaults to daily at 03:00 UTC', () => {
    expect(loadConfig({}).purgeProposalCron).toBe('0 3 * * *');
  });
  it('off disables it', () => {
    expect(loadConfig({ BLASTGATE_PURGE_PROPOSAL_CRON: 'off' }).purgeProposalCron).toBeNull();
  });
  it('takes a cron expression', () => {
    expect(loadConfig({ BLASTGATE_PURGE_PROPOSAL_CRON: '*/15 * * * *' }).purgeProposalCron).toBe('*/15 * * * *');
  });
  it.each(['daily', '61 * * * *', '* * 32 * *'])('refuses %s, naming the variable', (v) => {
    expect(problems({ BLASTGATE_PURGE_PROPOSAL_CRON: v })).toEqual([
      expect.stringMatching(/^BLASTGATE_PURGE_PROPOSAL_CRON must be a cron expression .* or "off"/),
    ]);
  });
});
