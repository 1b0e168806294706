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
        uncertain: 1,
        activeAgain: 1,
        items: [
          { id: 'app_1', reason: 'erased', detail: 'erased by op_e (compliance erasure): …' },
          { id: 'app_2', reason: 'restored', detail: 'already restored by op_r' },
          { id: 'app_3', reason: 'deleted_again', detail: 'restored since and deleted again by op_d: …' },
          { id: 'app_4', reason: 'uncertain', detail: 'the delete by op_x may or may not have happened (…)' },
          { id: 'app_5', reason: 'active_again', detail: 'active again since its delete by op_d: …' },
        ],
      },
    });
    expect(lines).toContain('  left out: 1 already purged (app_1)');
    expect(lines).toContain('    of them erased, snapshots destroyed: 1 (app_1)');
    expect(lines).toContain('  left out: 1 brought back since');
    expect(lines).toContain('    already restored by op_r: app_2');
    expect(lines).toContain('  left out: 1 deleted again since');
    expect(lines).toContain('    restored since and deleted again by op_d: …: app_3');
    expect(lines).toContain('  left out: 1 whose delete may or may not have happened');
    expect(lines).toContain('    the delete by op_x may or may not have happened (…): app_4');
    expect(lines).toContain('  left out: 1 active again, brought back outside Blastgate');
    expect(lines).toContain('    active again since its delete by op_d: …: app_5');
  });

  it("names only the erased ones as erased, and groups what came back by who brought it back (a trial's 400-character line)", () => {
    const restored = ['app_40', 'app_41', 'app_42', 'site_4'].map((id) => ({
      id,
      reason: 'restored',
      detail: 'already restored by op_r',
    }));
    const lines = planLines({
      leftOut: {
        purged: 3,
        ids: ['app_60', 'app_61', 'app_80'],
        erased: 2,
        restored: 4,
        items: [
          { id: 'app_60', reason: 'erased', detail: '…' },
          { id: 'app_61', reason: 'erased', detail: '…' },
          { id: 'app_80', reason: 'purged', detail: '…' },
          ...restored,
        ],
      },
    });
    expect(lines).toContain('  left out: 3 already purged (app_60, app_61, app_80)');
    expect(lines).toContain('    of them erased, snapshots destroyed: 2 (app_60, app_61)');
    expect(lines).toContain('    already restored by op_r: app_40, app_41, app_42, site_4');
  });

  it('says which resources a restore asOf cannot take back to that time (liveAtAsOf)', () => {
    const lines = planLines({ liveAtAsOf: { count: 4, ids: ['app_50', 'app_51', 'app_52', 'site_5'] } });
    expect(lines.join('\n')).toContain('not as of that time: 4 were live then');
    expect(lines.join('\n')).toContain('(app_50, app_51, app_52, site_5)');
  });
});

describe('planLines cascadeLeftOut', () => {
  it('names the descendants a cascade leaves out as already deleted, the first five of them', () => {
    const lines = planLines({
      itemCount: 2,
      tenantCount: 1,
      cascade: [{ type: 'app', count: 1 }],
      cascadeLeftOut: [
        { type: 'app', count: 2, ids: ['app_1', 'app_2'] },
        { type: 'widget', count: 7, ids: ['w1', 'w2', 'w3', 'w4', 'w5', 'w6', 'w7'] },
      ],
    });
    expect(lines).toContain('  cascade: 1 app');
    expect(lines).toContain('  left out of the cascade: 2 app already deleted (app_1, app_2)');
    expect(lines).toContain('  left out of the cascade: 7 widget already deleted (w1, w2, w3, w4, w5, …)');
  });
});

describe('planLines waves', () => {
  it('says a step is the share of tenants reached, and what each wave adds', () => {
    const lines = planLines({
      itemCount: 1_200,
      tenantCount: 12,
      waves: [
        { index: 0, kind: 'internal', step: null, tenants: 1, items: 10 },
        { index: 1, kind: 'canary', step: '1', tenants: 1, items: 40 },
        { index: 2, kind: 'wave', step: '25%', tenants: 2, items: 150 },
        { index: 3, kind: 'wave', step: '100%', tenants: 8, items: 1_000 },
      ],
    });
    expect(lines.filter((l) => l.startsWith('  wave'))).toEqual([
      '  wave 1 (internal): 1 tenant, 10 items',
      '  wave 2 (up to 1 tenant): 1 more tenant, 40 items',
      '  wave 3 (up to 25% of tenants): 2 more tenants, 150 items',
      '  wave 4 (up to 100% of tenants): 8 more tenants, 1000 items',
    ]);
  });
});
