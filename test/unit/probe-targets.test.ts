// Which (tenant, system) pairs a bake round probes: one per tenant and type its items touched, a
// cascade's descendants of another type through that type's adapter.
import { describe, expect, it } from 'vitest';
import { probeTargets } from '../../src/modules/execution/bake.ts';

describe('probeTargets', () => {
  it.each([
    [
      'own items only',
      [
        { tenantId: 'b', type: null },
        { tenantId: 'a', type: null },
      ],
      [
        ['a', 'site'],
        ['b', 'site'],
      ],
    ],
    [
      "a cascade into another tenant's apps probes that tenant through the apps' system",
      [
        { tenantId: 'a', type: null },
        { tenantId: 'a', type: 'app' },
        { tenantId: 'b', type: 'app' },
      ],
      [
        ['a', 'site'],
        ['a', 'app'],
        ['b', 'app'],
      ],
    ],
    [
      "a descendant of the operation's own type needs no second probe",
      [
        { tenantId: 'a', type: 'site' },
        { tenantId: 'a', type: null },
      ],
      [['a', 'site']],
    ],
    ['nothing touched', [], []],
  ])('%s', (_, touched, expected) => {
    expect(probeTargets(touched, 'site').map((t) => [t.tenantId, t.type])).toEqual(expected);
  });
});
