// The other commands against the real API (no workers needed): tokens create/list/rotate/revoke,
// signal and abort of a planned operation (then watch: cancelled → 11), restore and purge
// refusals printed with the server's code; every --json output parses.
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { CLI_BIN, jsonError, runCli } from '../support/cli.ts';
import { query, seedRegistry } from '../support/seed.ts';
import type { Role } from '../../src/modules/auth/roles.ts';

let t: TestApp;
let url: string;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 4, appsPerSite: 2 });
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await t?.close();
});

const as = (role: Role, args: string[], input?: string) =>
  runCli(args, { url, token: t.tokens[role], ...(input !== undefined ? { input } : {}) });
const doc = (stdout: string) => JSON.parse(stdout) as Record<string, unknown>;

describe('blastgate admin and control commands', () => {
  it('tokens: create shows the new secret once, list never does, rotate and revoke', async () => {
    const created = await as('admin', ['--json', 'tokens', 'create', '--name', 'ci-bot', '--role', 'requester']);
    expect(created.code, created.stderr).toBe(0);
    const tok = doc(created.stdout) as { id: string; token: string };
    expect(tok.token).toMatch(/^bg_/);
    const list = await as('admin', ['--json', 'tokens', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).not.toContain(tok.token);
    expect(list.stdout).not.toContain(t.tokens.admin);
    const listed = await as('admin', ['tokens', 'list']);
    expect(listed.stdout).toContain('ci-bot');
    const rotated = await as('admin', ['--json', 'tokens', 'rotate', tok.id, '--grace-seconds', '0']);
    expect(rotated.code, rotated.stderr).toBe(0);
    const revoked = await as('admin', ['--json', 'tokens', 'revoke', tok.id]);
    expect(revoked.code).toBe(0);
    expect(doc(revoked.stdout)).toMatchObject({ id: tok.id, revoked: true });
    // A scope with a tenant the registry does not have: made, with a warning naming it.
    const typo = await as('admin', [
      'tokens',
      'create',
      '--name',
      'ci-typo',
      '--role',
      'requester',
      '--scope-tenants',
      'tn_nowhere',
    ]);
    expect(typo.code, typo.stderr).toBe(0);
    // On stderr: stdout is the secret a script reads.
    expect(typo.stderr).toContain('blastgate: warning: no such tenant in the registry: tn_nowhere');
    expect(typo.stdout).not.toContain('warning');
    const typoJson = await as('admin', [
      '--json',
      'tokens',
      'create',
      '--name',
      'ci-typo-json',
      '--role',
      'requester',
      '--scope-tenants',
      'tn_nowhere',
    ]);
    expect(doc(typoJson.stdout)).toMatchObject({ unknownScope: { tenants: ['tn_nowhere'] } });
    expect(JSON.parse(typoJson.stderr.trim())).toMatchObject({
      warning: { code: 'UNKNOWN_SCOPE', tenants: ['tn_nowhere'] },
    });
    // Not an admin: the server's 403 and code, exit 1.
    const forbidden = await as('viewer', ['tokens', 'list']);
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr).toMatch(/403 FORBIDDEN: /);
  });

  it('signal and abort a planned operation; watching it then ends cancelled (11)', async () => {
    const sub = await as(
      'requester',
      ['--json', 'submit', '--type', 'app', '--reason', 'To be aborted', '--ticket', 'T-3'],
      'app_00001_00\napp_00001_01\n',
    );
    expect(sub.code, sub.stderr).toBe(0);
    const id = (doc(sub.stdout).operation as { id: string }).id;
    const sig = await as('requester', ['--json', 'signal', id, '--kind', 'support_ticket', '--detail', 'ZD-1']);
    expect(sig.code, sig.stderr).toBe(0);
    const typo = await as('requester', [
      '--json',
      'signal',
      id,
      '--kind',
      'support_ticket',
      '--tenant',
      'tenant_0OOO1',
    ]);
    expect(typo.code, typo.stderr).toBe(0);
    expect(doc(typo.stdout).state).toBe('planned');
    expect(typo.stderr).toContain('warning: tenant tenant_0OOO1 is not in the registry (a typo?)');
    const noReason = await as('operator', ['abort', id]);
    expect(noReason.code).toBe(2);
    const aborted = await as('operator', ['--json', 'abort', id, '--reason', 'Not needed after all']);
    expect(aborted.code, aborted.stderr).toBe(0);
    expect(doc(aborted.stdout).state).toBe('cancelled');
    const watched = await as('viewer', ['--json', 'watch', id]);
    expect(watched.code).toBe(11);
    const last = JSON.parse(watched.stdout.trim().split('\n').pop()!) as { data: { state: string } };
    expect(last.data.state).toBe('cancelled');
  });

  it('approve on a terminal asks, showing the plan hash, and approves only on yes', async () => {
    const sub = await as(
      'requester',
      ['--json', 'submit', '--type', 'app', '--reason', 'To be approved', '--ticket', 'T-4'],
      'app_00002_00\n',
    );
    const op = doc(sub.stdout).operation as { id: string; planHash: string };
    // A real pseudo-terminal (util-linux `script`), answering the prompt.
    const onTty = (answer: string) =>
      runCli(['-qec', `${process.execPath} ${CLI_BIN} approve ${op.id}`, '/dev/null'], {
        url,
        token: t.tokens.approver,
        bin: ['script'],
        input: answer,
      });
    const no = await onTty('n\n');
    expect(no.stdout).toContain(`Approve plan ${op.planHash}? [y/N]`);
    expect(no.code).toBe(1);
    expect((await as('viewer', ['--json', 'status', op.id])).stdout).toContain('"state":"planned"');
    // The status of a plan nobody approved yet says what it waits for.
    expect((await as('viewer', ['status', op.id])).stdout).toContain(
      'approved by nobody yet; still needs an approval by someone other than the requester',
    );
    const yes = await onTty('y\n');
    expect(yes.code, yes.stdout).toBe(0);
    expect(yes.stdout).toContain(`Approved plan ${op.planHash}`);
  });

  it('status of a plan whose start was refused PLAN_STALE says so (it stays approved)', async () => {
    const sub = await as(
      'requester',
      ['--json', 'submit', '--type', 'app', '--reason', 'To go stale', '--ticket', 'T-5'],
      'app_00003_00\n',
    );
    const op = doc(sub.stdout).operation as { id: string; planHash: string };
    expect((await as('approver', ['--json', 'approve', op.id, '--yes'])).code).toBe(0);
    await query(t.databaseUrl, `UPDATE resources SET protected = true WHERE id = 'app_00003_00'`);
    const start = await as('operator', ['start', op.id, '--reason', 'Change window open']);
    expect(start.code).toBe(1);
    expect(start.stderr).toMatch(/409 PLAN_STALE: /);
    const status = await as('viewer', ['status', op.id]);
    expect(status.stdout).toContain(': approved');
    expect(status.stdout).toMatch(/start refused PLAN_STALE \(\S+, [0-9T:.-]+Z\): 1 planned resource\(s\) changed/);
  });

  it.each(['restore', 'purge'])(
    '%s: an ID list without --type, or with no ID in it, is a usage error naming what to give (exit 2)',
    async (verb) => {
      const base = [verb, '--reason', 'Bring them back', '--ticket', 'INC-2', '--ids-file', '-'];
      const noType = await as('requester', base, 'app_00001_00\n');
      expect(noType.code, noType.stderr).toBe(2);
      expect(noType.stderr).toContain('--ids-file needs --type (the type every ID must be)');
      const empty = await as('requester', [...base, '--type', 'app'], '\n\n');
      expect(empty.code, empty.stderr).toBe(2);
      expect(empty.stderr).toContain('the ID list is empty');
    },
  );

  it('restore and purge refusals carry the server code', async () => {
    const r = await as('requester', [
      '--json',
      'restore',
      '--tenant',
      'tenant_00001',
      '--reason',
      'Nothing was deleted',
      '--ticket',
      'INC-1',
      '--dry-run',
    ]);
    expect(r.code).toBe(1);
    expect(jsonError(r).error.code).toBe('NOTHING_TO_RESTORE');
    const p = await as('requester', [
      'purge',
      '--due-before',
      new Date().toISOString(),
      '--reason',
      'Nothing is due',
      '--ticket',
      'CHG-2',
      '--dry-run',
    ]);
    expect(p.code).toBe(1);
    expect(p.stderr).toMatch(/422 NOTHING_TO_PURGE: /);
  });

  it('purge --json prints {operation} as submit does, without --wait', async () => {
    // A resource soft-deleted long ago (outside Blastgate): its retention has ended.
    await query(
      t.databaseUrl,
      `UPDATE resources SET state = 'soft_deleted', deleted_at = now() - interval '400 days',
         purge_after = now() - interval '1 day' WHERE id = 'app_00003_01'`,
    );
    const r = await as('requester', [
      '--json',
      'purge',
      '--due-before',
      new Date().toISOString(),
      '--reason',
      'Purge what is due',
      '--ticket',
      'CHG-3',
      '--waves',
      '1,100%',
      '--bake-seconds',
      '0',
      '--concurrency',
      '2',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const op = doc(r.stdout).operation as { rollout: unknown; plan: { waves: { step: string }[] } };
    expect(op).toMatchObject({ kind: 'purge', state: 'planned', itemCount: 1 });
    // The rollout flags reach the purge (before, a restore or purge took the server's waves only).
    expect(op.rollout).toMatchObject({ waves: ['1', '100%'], bakeSeconds: 0, concurrency: 2 });
    expect(op.plan.waves.map((w) => w.step)).toEqual(['1']);
  });

  it('restore, purge and tokens create name the flag whose value the server refused; no scope is a usage error', async () => {
    const restore = await as('requester', [
      '--json',
      'restore',
      '--tenant',
      'tenant_00001',
      '--reason',
      'x',
      '--ticket',
      'INC-3',
      '--dry-run',
    ]);
    // A 400: the flag is at fault, a usage error (exit 2).
    expect(restore.code, restore.stderr).toBe(2);
    const re = jsonError(restore).error;
    expect(re.message).toMatch(/^Invalid --reason: /);
    expect(re.details).toEqual([expect.objectContaining({ field: 'body.reason', flag: '--reason' })]);
    const restoreOf = (...more: string[]) => [
      'restore',
      '--tenant',
      'tenant_00001',
      '--reason',
      'Bring them back',
      '--ticket',
      'INC-5',
      ...more,
    ];
    const cases: [Role, string[], string | undefined, number, string][] = [
      [
        'requester',
        ['purge', '--due-before', 'soon', '--reason', 'Purge due', '--ticket', 'C-1'],
        undefined,
        2,
        'Invalid --due-before',
      ],
      ['admin', ['tokens', 'create', '--name', 'bot', '--role', 'superuser'], undefined, 2, 'Invalid --role'],
      ['requester', restoreOf('--idempotency-key', 'bad key!'), undefined, 2, 'Invalid --idempotency-key'],
      // A list's bad value by what it is, not by its position in the list.
      ['requester', restoreOf('--waves', '50%,10%'), undefined, 2, 'Invalid --waves "10%": must reach more tenants'],
      [
        'admin',
        ['tokens', 'create', '--name', 'bot', '--role', 'requester', '--scope-types', 'app,Site'],
        undefined,
        2,
        'Invalid --scope-types "Site": must match pattern',
      ],
      ['requester', restoreOf('--bake-seconds', '999999'), undefined, 2, 'Invalid --bake-seconds'],
      [
        'requester',
        ['submit', '--type', 'app', '--reason', 'Remove them', '--ticket', 'T-7', '--idempotency-key', 'bad key!'],
        'app_00001_00\n',
        2,
        'Invalid --idempotency-key',
      ],
      ['requester', restoreOf('--operation', 'op_x'), undefined, 2, 'give one scope, not --tenant and --operation'],
    ];
    for (const [role, args, input, code, text] of cases) {
      const r = await as(role, args, input);
      expect(r.code, r.stderr).toBe(code);
      expect(r.stderr).toContain(text);
    }
    for (const verb of ['restore', 'purge']) {
      const none = await as('requester', [verb, '--reason', 'Bring them back', '--ticket', 'INC-4']);
      expect(none.code, none.stderr).toBe(2);
      expect(none.stderr).toContain(
        `give a scope: --tenant, --operation, or --type with --ids-file${verb === 'purge' ? ', or --due-before' : ''}`,
      );
    }
  });
});
