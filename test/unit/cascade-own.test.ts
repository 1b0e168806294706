// A delete whose cascade crosses adapters (cascade-own.ts), against typed fakes: descendants of
// another adapter go first, deepest first, each through its own; the parent goes with the rest of
// its cascade only once they all went; and whatever went out is never reported as "never sent" or
// "changed nothing" (the mark stays, a rollback restores it).
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/lib/errors.ts';
import {
  SKIPPED,
  type AdapterItem,
  type ApplyOptions,
  type ItemResult,
  type TargetAdapter,
} from '../../src/modules/adapters/types.ts';
import {
  descendantOutcomes,
  deletingThroughOwnAdapters,
  ownAdapters,
} from '../../src/modules/execution/cascade-own.ts';

type Answer = (i: AdapterItem) => ItemResult;
const calls: { type: string; ids: string[]; descendants: string[][] }[] = [];

function fake(
  type: string,
  cascade: TargetAdapter['cascade'],
  answer: Answer = () => ({ ok: true }),
  system = cascade === 'same_transaction' ? 'registry' : 'http://apps.internal',
): TargetAdapter {
  return {
    kind: cascade === 'same_transaction' ? 'registry' : 'http',
    cascade,
    system,
    snapshot: async () => [],
    probe: async () => ({ result: 'healthy' }),
    async apply(_action, items) {
      calls.push({
        type,
        ids: items.map((i) => i.resourceId),
        descendants: items.map((i) => (i.descendants ?? []).map((d) => d.resourceId)),
      });
      return items.map(answer);
    },
  };
}

const kid = (id: string, type: string, depth: number): AdapterItem => ({
  operationId: 'op',
  resourceId: id,
  tenantId: 't',
  type,
  depth,
});
const site = (id: string, descendants: AdapterItem[]): AdapterItem => ({ ...kid(id, 'site', 0), descendants });
const OPTS: ApplyOptions = {
  idempotencyKey: (i, a) => `${a}-${i.resourceId}`,
  shouldContinue: () => true,
  concurrency: 2,
};

async function run(o: { site?: Answer; app?: Answer; module?: Answer; items: AdapterItem[] }) {
  calls.length = 0;
  const types: Record<string, TargetAdapter> = {
    site: fake('site', 'same_transaction', o.site),
    note: fake('note', 'same_transaction'),
    app: fake('app', 'downstream', o.app),
    module: fake('module', 'downstream', o.module),
  };
  const adapters = { get: async (t: string) => ({ adapter: types[t]!, hasProbe: true }) };
  const own = await ownAdapters(adapters, types.site!, ['note', 'app', 'module']);
  expect([...own.keys()].sort()).toEqual(['app', 'module']);
  return deletingThroughOwnAdapters(types.site!, own).apply('softDelete', o.items, OPTS);
}

describe('a registry parent with descendants of other adapters', () => {
  it('sends each through its own adapter, deepest first, then the parent with those of its own database', async () => {
    const items = [
      site('site_1', [kid('app_1', 'app', 1), kid('note_1', 'note', 1), kid('mod_1', 'module', 2)]),
      site('site_2', []),
    ];
    expect(await run({ items })).toEqual([{ ok: true }, { ok: true }]);
    expect(calls).toEqual([
      { type: 'module', ids: ['mod_1'], descendants: [[]] },
      { type: 'app', ids: ['app_1'], descendants: [[]] },
      { type: 'site', ids: ['site_1', 'site_2'], descendants: [['note_1'], []] },
    ]);
  });

  it('an HTTP parent whose descendants are all behind its base URL keeps its downstream cascade: one call', async () => {
    const root = fake('app', 'downstream');
    const own = await ownAdapters({ get: async () => ({ adapter: fake('x', 'downstream'), hasProbe: true }) }, root, [
      'module',
    ]);
    expect(own.size).toBe(0);
    expect(deletingThroughOwnAdapters(root, own)).toBe(root);
  });

  it('a refused descendant keeps its parent and deeper levels unsent; the siblings that went are done', async () => {
    const refused: ItemResult = { ok: false, permanent: true, error: 'HTTP 422', unapplied: true };
    const items = [site('site_1', [kid('app_1', 'app', 1), kid('app_2', 'app', 1), kid('note_1', 'note', 1)])];
    const [r] = await run({ items, app: (i) => (i.resourceId === 'app_2' ? refused : { ok: true }) });
    expect(calls.map((c) => c.type)).toEqual(['app']);
    expect(r).toMatchObject({ ok: false, permanent: true, error: expect.stringContaining('app_2 (app): HTTP 422') });
    expect(r).not.toHaveProperty('unapplied'); // app_1 went: the mark stays
    expect(r).toMatchObject({ ownUnsent: true }); // for app_1: the site itself was never sent
    expect(descendantOutcomes([{ seq: 11 }, { seq: 12 }, { seq: 13 }], r!)).toEqual([
      { seq: 11, state: 'done', error: null },
      { seq: 12, state: 'failed', error: 'HTTP 422', permanent: true, unapplied: true },
      { seq: 13, state: 'failed', error: expect.stringContaining('not deleted'), permanent: true, unapplied: true },
    ]);
  });

  it('nothing went (every try refused): the item changed nothing', async () => {
    const items = [site('site_1', [kid('app_1', 'app', 1)])];
    const [r] = await run({ items, app: () => ({ ok: false, permanent: true, error: 'HTTP 400', unapplied: true }) });
    expect(r).toMatchObject({ ok: false, permanent: true, unapplied: true });
    expect(r).not.toHaveProperty('ownUnsent'); // its mark goes: nothing to restore
  });

  it('halted before any call: never sent; halted after some went: sent again later with the same keys', async () => {
    const items = [
      site('site_1', [kid('app_1', 'app', 1)]),
      site('site_2', [kid('mod_2', 'module', 2), kid('app_2', 'app', 1)]),
    ];
    const res = await run({ items, module: () => ({ ok: true }), app: () => SKIPPED });
    expect(res[0]).toEqual(SKIPPED);
    expect(res[1]).toMatchObject({ ok: false, permanent: false, interrupted: true, ownUnsent: true });
    expect(calls.map((c) => c.type)).toEqual(['module', 'app']);
  });

  it('the parent refused after its descendants went: failed, not unapplied, own delete unsent, the descendants done', async () => {
    const items = [site('site_1', [kid('app_1', 'app', 1), kid('note_1', 'note', 1)])];
    const gone: ItemResult = { ok: false, permanent: true, error: 'cascade changed since the plan', unapplied: true };
    const [r] = await run({ items, site: () => gone });
    expect(r).toMatchObject({ ok: false, permanent: true, error: gone.error });
    expect(r).not.toHaveProperty('unapplied');
    // Its statement changed nothing: a rollback restores the descendants that went, not the live site.
    expect(r).toMatchObject({ ownUnsent: true });
    expect(descendantOutcomes([{ seq: 2 }, { seq: 3 }], r!)!.map((d) => d.state)).toEqual(['done', 'failed']);
    // The parent halted after its descendants went: not "never sent" (its descendants' mark stays), nor deleted.
    expect((await run({ items, site: () => SKIPPED }))[0]).toMatchObject({
      ok: false,
      interrupted: true,
      ownUnsent: true,
    });
  });

  it('a descendant type whose adapter cannot be built fails its parent, saying why, with nothing sent', async () => {
    const root = fake('site', 'same_transaction');
    const adapters = {
      get: async (t: string) => {
        if (t === 'app') throw new AppError(422, 'SIGNING_SECRET_MISSING', 'no secret');
        return { adapter: root, hasProbe: true };
      },
    };
    const own = await ownAdapters(adapters, root, ['app']);
    calls.length = 0;
    const [r] = await deletingThroughOwnAdapters(root, own).apply(
      'softDelete',
      [site('site_1', [kid('app_1', 'app', 1)])],
      OPTS,
    );
    expect(r).toMatchObject({
      ok: false,
      permanent: true,
      unapplied: true,
      error: expect.stringContaining('adapter for type app unavailable'),
    });
    expect(calls).toEqual([]);
  });
});

describe('an HTTP parent with descendants in other systems (registry rows, another base URL)', () => {
  const types: Record<string, TargetAdapter> = {};
  const setup = (siteAnswer: Answer = () => ({ ok: true })) => {
    calls.length = 0;
    Object.assign(types, {
      site: fake('site', 'downstream', siteAnswer, 'http://sites.internal'),
      // Behind the site's base URL: the downstream's own cascade takes it.
      page: fake('page', 'downstream', undefined, 'http://sites.internal'),
      app: fake('app', 'same_transaction'),
      module: fake('module', 'same_transaction'),
      asset: fake('asset', 'downstream', undefined, 'http://assets.internal'),
    });
    return { get: async (t: string) => ({ adapter: types[t]!, hasProbe: true }) };
  };
  const items = () => [
    {
      ...kid('site_1', 'site', 0),
      descendants: [
        kid('page_1', 'page', 1),
        kid('app_1', 'app', 1),
        kid('asset_1', 'asset', 1),
        kid('mod_1', 'module', 2),
      ],
    },
  ];
  const deleteSites = async (answer?: Answer) => {
    const adapters = setup(answer);
    const own = await ownAdapters(adapters, types.site!, ['page', 'app', 'asset', 'module']);
    expect([...own.keys()].sort()).toEqual(['app', 'asset', 'module']);
    calls.length = 0;
    return deletingThroughOwnAdapters(types.site!, own).apply('softDelete', items(), OPTS);
  };

  it('deletes the registry rows and the other system’s descendants first, deepest first, then the parent', async () => {
    expect(await deleteSites()).toEqual([{ ok: true }]);
    expect(calls).toEqual([
      { type: 'module', ids: ['mod_1'], descendants: [[]] },
      { type: 'app', ids: ['app_1'], descendants: [[]] },
      { type: 'asset', ids: ['asset_1'], descendants: [[]] },
      // The page goes with the site, in the downstream's own cascade.
      { type: 'site', ids: ['site_1'], descendants: [['page_1']] },
    ]);
  });

  it('a parent call of unknown outcome (a timeout): those of its own system may be gone with it, the others are done', async () => {
    const [r] = await deleteSites(() => ({ ok: false, permanent: false, error: 'timeout after 5000 ms' }));
    expect(r).toMatchObject({ ok: false, permanent: false, error: 'timeout after 5000 ms' });
    expect(r).not.toHaveProperty('unapplied');
    expect(r).not.toHaveProperty('ownUnsent');
    const kids = descendantOutcomes([{ seq: 2 }, { seq: 3 }, { seq: 4 }, { seq: 5 }], r!)!;
    // page_1 shares the site's uncertainty: it keeps its mark (not unapplied), so a rollback restores it.
    expect(kids[0]).toEqual({ seq: 2, state: 'failed', error: expect.stringContaining('timeout'), permanent: false });
    expect(kids.slice(1).map((k) => k.state)).toEqual(['done', 'done', 'done']);
  });

  it('a parent refused for good (a 403): those of its own system changed nothing, the others are done', async () => {
    const [r] = await deleteSites(() => ({ ok: false, permanent: true, error: 'HTTP 403', unapplied: true }));
    expect(r).toMatchObject({ ok: false, permanent: true, error: 'HTTP 403', ownUnsent: true });
    expect(r).not.toHaveProperty('unapplied'); // the registry rows went: the mark stays
    const kids = descendantOutcomes([{ seq: 2 }, { seq: 3 }, { seq: 4 }, { seq: 5 }], r!)!;
    expect(kids[0]).toMatchObject({ seq: 2, state: 'failed', permanent: true, unapplied: true });
    expect(kids.slice(1).map((k) => k.state)).toEqual(['done', 'done', 'done']);
  });

  it('a registry row that cannot be deleted keeps the HTTP parent unsent, naming it', async () => {
    const adapters = setup();
    types.app = fake('app', 'same_transaction', () => ({ ok: false, permanent: true, error: 'gone', unapplied: true }));
    const own = await ownAdapters(adapters, types.site!, ['page', 'app', 'asset', 'module']);
    calls.length = 0;
    const [r] = await deletingThroughOwnAdapters(types.site!, own).apply('softDelete', items(), OPTS);
    // Nothing more is sent for a site one of whose descendants did not go.
    expect(calls.map((c) => c.type)).toEqual(['module', 'app']);
    expect(r).toMatchObject({
      ok: false,
      permanent: true,
      ownUnsent: true,
      error: expect.stringContaining('app_1 (app): gone'),
    });
  });
});
