// Global freeze: an admin stops every running operation at once (and no start or resume is
// accepted) until the freeze is lifted. Lifting it resumes nothing by itself.
import { Type } from '@fastify/type-provider-typebox';
import { inTransaction } from '../../lib/sql.ts';
import { errorResponses, MultilineText, type App } from '../../lib/schemas.ts';
import { appendAudit } from '../audit/repository.ts';
import { readFreeze } from './state.ts';
import { LIVE_STATES, type LifecycleEvent } from '../operations/lifecycle.ts';

const FREEZE_LOCK = 7_342_003; // serialises changes of the global freeze setting

const FreezeView = Type.Object(
  {
    frozen: Type.Boolean(),
    reason: Type.Optional(Type.String()),
    by: Type.Optional(Type.String()),
    affected: Type.Optional(
      Type.Array(Type.String(), { description: 'Operations stopped (or marked) by this change' }),
    ),
    stillPaused: Type.Optional(
      Type.Array(Type.String(), {
        description:
          'On lifting: the operations paused now (by the freeze or before it), first 1,000 by ID. Lifting resumes none of them; an operator resumes each (POST /v1/operations/{id}/resume, blastgate resume <id>)',
      }),
    ),
  },
  {
    description: 'The global freeze',
    example: { frozen: true, reason: 'Incident INC-7', by: 'alice', affected: ['op_…'] },
  },
);

export default async function freezeRoutes(app: App) {
  app.get(
    '/admin/freeze',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'getFreeze',
        tags: ['admin'],
        summary: 'Read the global freeze',
        description: 'Whether a global freeze is in effect.',
        response: { 200: FreezeView, ...errorResponses(401) },
      },
    },
    async () => readFreeze(app.db.pool),
  );

  app.put(
    '/admin/freeze',
    {
      // The global halt button: control pool, own rate-limit budget, never shed.
      config: { auth: ['admin'], audited: true, control: true },
      schema: {
        operationId: 'setFreeze',
        tags: ['admin'],
        summary: 'Set or lift the global freeze',
        description:
          'Freezing pauses every running or baking operation before its next destructive call and refuses start/resume until lifted.',
        body: Type.Object(
          { frozen: Type.Boolean(), reason: MultilineText({ minLength: 3, maxLength: 2000 }) },
          {
            additionalProperties: false,
            description: 'Freeze or unfreeze',
            // Freezing is the safe direction; the reason says where it came from, not an incident.
            example: { frozen: true, reason: 'Frozen from the dashboard while checking running operations' },
          },
        ),
        response: { 200: FreezeView, ...errorResponses(400, 401, 403) },
      },
    },
    async (req) => {
      const actor = { name: req.principal!.name, tokenId: req.principal!.tokenId };
      const value = { frozen: req.body.frozen, reason: req.body.reason, by: actor.name };
      const flipped = await inTransaction(app.db.control.pool, async (c) => {
        // One change of the setting at a time, so each flip is seen (and fanned out) exactly once.
        await c.query('SELECT pg_advisory_xact_lock($1)', [FREEZE_LOCK]);
        const before = await readFreeze(c);
        await c.query(
          `INSERT INTO settings (key, value, updated_by) VALUES ('freeze', $1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = $1, updated_by = $2, updated_at = now()`,
          [JSON.stringify(value), actor.name],
        );
        const changed = before.frozen !== req.body.frozen;
        await appendAudit(c, {
          actor: actor.name,
          action: req.body.frozen ? 'freeze.set' : 'freeze.lift',
          outcome: 'accepted',
          payload: { reason: req.body.reason, changed },
        });
        return changed;
      });
      req.auditedByService = true;
      // The setting is already in force for every worker (they read it before each call). A flip
      // is also an event on every live operation: running ones pause, the others record it.
      const affected: string[] = [];
      if (flipped) {
        const live = await app.db.control.pool.query<{ id: string }>(
          `SELECT id FROM operations WHERE state = ANY($1::text[]) ORDER BY id`,
          [LIVE_STATES],
        );
        const event: LifecycleEvent = req.body.frozen
          ? { type: 'freeze', by: { id: actor.tokenId, name: actor.name }, reason: req.body.reason }
          : { type: 'unfreeze', by: { id: actor.tokenId, name: actor.name }, reason: req.body.reason };
        for (const { id } of live.rows) {
          const r = await app.engine.apply(id, event, actor, { report: true });
          if (r?.changed) affected.push(id);
        }
      }
      if (req.body.frozen) return { ...value, affected };
      const paused = await app.db.control.pool.query<{ id: string }>(
        `SELECT id FROM operations WHERE state = 'paused' ORDER BY id LIMIT 1000`,
      );
      return { ...value, affected, stillPaused: paused.rows.map((r) => r.id) };
    },
  );
}
