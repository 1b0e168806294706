// The CLI's plan as a reviewer reads it says what the scope left out and why: purged (and erased),
// brought back since, deleted again since.
import { describe, expect, it } from 'vitest';
import { planLines } from '../../src/cli/context.ts';

describe('planLines leftOut', () => {
  it('names the purged (how many erased) and what was brought back or deleted again since, with why', () => {
    const lines = planLines({
      itemCount: 1,
      tenantCount: 1,
      leftOut: {
        purged: 1,
        ids: ['app_1'],
        erased: 1,
        restored: 1,
        deletedAgain: 1,
        items: [
          { id: 'app_1', reason: 'erased', detail: 'erased by op_e (compliance erasure): …' },
          { id: 'app_2', reason: 'restored', detail: 'already restored by op_r' },
          { id: 'app_3', reason: 'deleted_again', detail: 'restored since and deleted again by op_d: …' },
        ],
      },
    });
    expect(lines).toContain('  left out: 1 already purged, 1 of them erased (app_1)');
    expect(lines).toContain('  left out: 1 brought back since: app_2 (already restored by op_r)');
    expect(lines).toContain('  left out: 1 deleted again since: app_3 (restored since and deleted again by op_d: …)');
  });
});
