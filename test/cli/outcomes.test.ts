// The CLI against the real stack (API, workers, PostgreSQL, Redis, a real downstream), as a child
// process: submit → approve → start → watch ends with the exit code of the outcome — 0 completed,
// 10 rejected (with counts, first offenders and the report command), 11 rolled back after a halt,
// 12 paused while waiting, 13 timed out waiting for approval — and every --json output parses.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  buildExecHarness,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { appsOf, deleteSitesOf } from '../support/exec-helpers.ts';
import { CLI_BIN, CLI_ROOT, jsonError, runCli, type CliRun } from '../support/cli.ts';
import { appId, query, seedRegistry, siteId, tenantId } from '../support/seed.ts';
import type { Role } from '../../src/modules/auth/roles.ts';

let h: ExecHarness;
let url: string;
let dir: string;
let n = 0;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 40, appsPerSite: 2, internalTenants: 1 });
  await useHttpAdapter(h);
  await h.app.listen({ port: 0, host: '127.0.0.1' });
  url = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  dir = await mkdtemp(join(tmpdir(), 'bg-cli-e2e-'));
});
afterAll(async () => {
  await h?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});
beforeEach(() => h.downstream.reset());

const as = (role: Role, args: string[], input?: string) =>
  runCli(args, { url, token: h.tokens[role], ...(input !== undefined ? { input } : {}) });

async function idsFile(ids: string[]): Promise<string> {
  const file = join(dir, `ids-${++n}.txt`);
  await writeFile(file, ids.join('\n') + '\n');
  return file;
}

const parse = (r: CliRun) => {
  expect(r.stdout.trim().split('\n'), r.stderr).toHaveLength(1);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a test reads what the CLI printed
  return JSON.parse(r.stdout) as Record<string, any>;
};

/** submit (requester) → approve --yes (approver); the operation's id and plan hash. */
async function submitted(ids: string[], extra: string[] = []) {
  const file = await idsFile(ids);
  const sub = await as('requester', [
    '--json',
    'submit',
    '--type',
    'app',
    '--reason',
    'CLI end to end',
    '--ticket',
    'CHG-9',
    '--ids-file',
    file,
    '--bake-seconds',
    '0',
    ...extra,
  ]);
  expect(sub.code, sub.stderr).toBe(0);
  const { operation, submittedIds } = parse(sub);
  expect(submittedIds).toBe(ids.length);
  expect(operation.state).toBe('planned');
  return operation as { id: string; planHash: string };
}

/** `blastgate watch` as a child; `connected` once its first frame (the snapshot) was printed. */
function watchInBackground(id: string, flags: string[]) {
  const child = spawn(process.execPath, [CLI_BIN, ...flags, 'watch', id, '--timeout', '120s'], {
    cwd: CLI_ROOT,
    env: { ...process.env, BLASTGATE_URL: url, BLASTGATE_TOKEN: h.tokens.viewer },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let onFirst: () => void = () => undefined;
  const connected = new Promise<void>((r) => (onFirst = r));
  child.stdout.on('data', (b: Buffer) => ((stdout += b.toString()), /snapshot/.test(stdout) && onFirst()));
  child.stderr.on('data', (b: Buffer) => ((stderr += b.toString()), /watching:/.test(stderr) && onFirst()));
  const done = new Promise<CliRun>((r) => child.on('close', (code) => (onFirst(), r({ code, stdout, stderr }))));
  return { connected, done };
}

describe('blastgate CLI against the real stack', () => {
  it('submit → approve → start → watch: completed is exit 0; every --json output parses', async () => {
    const op = await submitted(appsOf([0, 1, 2, 3], 2), ['--waves', '1,100%']);

    // A token that may not approve is told so before the plan is shown (a trial saw the plan, then a 403).
    const notMine = await as('requester', ['approve', op.id, '--yes']);
    expect(notMine.code).toBe(1);
    expect(notMine.stderr).toContain(
      'FORBIDDEN: token "test-requester" has role requester: approving takes an approver',
    );
    expect(notMine.stdout).not.toContain(op.planHash);
    // Approving needs a confirmation: in a pipe without --yes it refuses (2) and sends nothing.
    const refused = await as('approver', ['approve', op.id]);
    expect(refused.code).toBe(2);
    expect(refused.stdout).toContain(`plan hash: ${op.planHash}`);
    expect(refused.stderr).toContain('CONFIRMATION_REQUIRED');
    const approved = await as('approver', ['--json', 'approve', op.id, '--yes']);
    expect(approved.code, approved.stderr).toBe(0);
    expect(parse(approved)).toMatchObject({ approvedPlanHash: op.planHash, state: 'approved' });

    // Watching from before the start. Not a terminal: one line per event on stderr, the outcome on stdout.
    const watcher = watchInBackground(op.id, []);
    await watcher.connected;
    const started = await as('operator', ['--json', 'start', op.id, '--reason', 'Window open']);
    expect(started.code, started.stderr).toBe(0);
    expect(parse(started).id).toBe(op.id);
    const watched = await watcher.done;
    expect(watched.code, watched.stderr).toBe(0);
    expect(watched.stderr).toContain('operation.completed');
    expect(watched.stdout).toContain(`${op.id} is completed`);

    // --json watch (of an operation that has ended: it says so at once): one JSON object per
    // event, the last one the outcome.
    const jw = await as('viewer', ['--json', 'watch', op.id]);
    expect(jw.code, jw.stderr).toBe(0);
    const events = jw.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; data: unknown });
    expect(events[0]!.event).toBe('snapshot');
    expect(events.at(-1)).toMatchObject({ event: 'outcome', data: { state: 'completed', exitCode: 0 } });

    const status = await as('viewer', ['--json', 'status', op.id]);
    expect(status.code).toBe(0);
    expect(parse(status)).toMatchObject({ id: op.id, state: 'completed' });
    expect((await as('viewer', ['status', '--exit-status', op.id])).code).toBe(0);
  });

  it('a rejected plan exits 10 with per-class counts, the first offenders and how to get the full report', async () => {
    const ids = [...appsOf([5], 2), 'app_00099_01', 'app_00099_02', 'site_00001'];
    const file = await idsFile(ids);
    const args = ['submit', '--type', 'app', '--reason', 'Has bad IDs', '--ticket', 'CHG-10', '--ids-file', file];
    const r = await as('requester', args);
    expect(r.code, r.stderr).toBe(10);
    expect(r.stderr).toMatch(/Plan rejected/);
    expect(r.stderr).toMatch(/unknown: 2 +e\.g\. app_00099_01 \(line 3\), app_00099_02 \(line 4\)/);
    expect(r.stderr).toMatch(/type_mismatch: 1 +e\.g\. site_00001 \(line 5, is site\)/);
    const opId = /blastgate report (op_\S+)/.exec(r.stderr)?.[1];
    expect(opId, r.stderr).toBeTruthy();
    expect(r.stderr).toContain(`GET /v1/operations/${opId}/report`);

    const j = await as('requester', ['--json', ...args, '--idempotency-key', 'cli-rejected-2']);
    expect(j.code).toBe(10);
    expect(j.stdout).toBe('');
    const err = jsonError(j);
    expect(err.exitCode).toBe(10);
    expect(err.error).toMatchObject({ code: 'PLAN_REJECTED', status: 422, details: { counts: { unknown: 2 } } });

    const report = await as('viewer', ['--json', 'report', opId!]);
    expect(report.code, report.stderr).toBe(0);
    const rows = report.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; class: string });
    expect(rows.map((x) => x.id).sort()).toEqual(['app_00099_01', 'app_00099_02', 'site_00001']);
    // Plain: a header names the columns, and says the index is not submit's 1-based "line N".
    const plain = await as('viewer', ['report', opId!]);
    expect(plain.code, plain.stderr).toBe(0);
    const lines = plain.stdout.trim().split('\n');
    expect(lines[1]).toBe('index (0-based, in the submitted list)\tid\tclass\tactual type\ttenant\tdetail');
    // (An empty detail column leaves a trailing tab, which the last line's trim() takes.)
    expect(lines.map((l) => l.trimEnd())).toContain('2\tapp_00099_01\tunknown');
    expect(lines.map((l) => l.trimEnd())).toContain('4\tsite_00001\ttype_mismatch\tsite\ttenant_00001');

    // An HTTP error prints the server's code and message.
    const missing = await as('viewer', ['status', 'op_doesnotexist']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/404 NOT_FOUND: /);
  });

  it("a dry run's next step repeats what makes it an erasure (a trial copied it into a plain soft delete)", async () => {
    const file = await idsFile(appsOf([31], 2));
    const args = ['plan', '--type', 'app', '--reason', 'Erase the user', '--ticket', 'GDPR-1', '--ids-file', file];
    const erase = await as('requester', [...args, '--erasure']);
    expect(erase.code, erase.stderr).toBe(0);
    expect(erase.stdout).toContain('Submit it: blastgate submit --type app --erasure … (same IDs)');
    const plain = await as('requester', args);
    expect(plain.stdout).toContain('Submit it: blastgate submit --type app … (same IDs)');
  });

  it('a rejected restore of a tenant says what to do without a list to fix (a trial read "Fix the list")', async () => {
    // site 36's delete takes along an app of site 37's tenant: that tenant's restore waits for the site.
    const moved = appId(36, 0);
    await request(h.app.server)
      .post('/v1/registry/resources')
      .set('authorization', h.auth('admin'))
      .send({ resources: [{ id: moved, type: 'app', tenantId: tenantId(37), parentId: siteId(36), state: 'active' }] })
      .expect(200);
    const del = await deleteSitesOf(h, [36]);
    expect((await waitForState(h, del.id, ['completed', 'completed_with_failures', 'halted'])).state).toBe('completed');
    const r = await as('requester', [
      'restore',
      '--tenant',
      tenantId(37),
      '--reason',
      'Bring it back',
      '--ticket',
      'INC-2',
      '--dry-run',
    ]);
    expect(r.code, r.stderr).toBe(10);
    expect(r.stderr).toContain(`parent_deleted: 1  e.g. ${moved} (is app, its parent site ${siteId(36)}`);
    expect(r.stderr).toContain('These come from the scope, not a list');
    expect(r.stderr).not.toContain('Fix the list');
    // The API's own message says it too (it read "or fix the list first", trial D).
    const j = jsonError(
      await as('requester', [
        '--json',
        'restore',
        '--tenant',
        tenantId(37),
        '--reason',
        'Again',
        '--ticket',
        'INC-2',
        '--dry-run',
      ]),
    );
    expect(j.error.message).toContain('settle first what each one names (the IDs come from the scope, not a list)');
  });

  it('report prints what the API says of each offender: the operation holding an in_flight ID', async () => {
    const holder = await submitted(appsOf([25], 2));
    const file = await idsFile([...appsOf([25], 1), ...appsOf([26], 1)]);
    const r = await as('requester', [
      'submit',
      '--type',
      'app',
      '--reason',
      'Overlaps',
      '--ticket',
      'CHG-12',
      '--ids-file',
      file,
    ]);
    expect(r.code, r.stderr).toBe(10);
    const opId = /blastgate report (op_\S+)/.exec(r.stderr)?.[1];
    const plain = await as('viewer', ['report', opId!]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout.trim().split('\n')).toContain(
      `0\t${appsOf([25], 1)[0]}\tin_flight\tapp\ttenant_00025\theld by ${holder.id}`,
    );
  });

  it('submit says when it was a replay of an idempotency key (the same operation, nothing new planned)', async () => {
    const file = await idsFile(appsOf([28], 2));
    const args = ['submit', '--type', 'app', '--reason', 'Replayed', '--ticket', 'CHG-13', '--ids-file', file];
    const first = await as('requester', ['--json', ...args, '--idempotency-key', 'cli-replay-1']);
    expect(first.code, first.stderr).toBe(0);
    expect(parse(first)).not.toHaveProperty('replayed');
    const again = await as('requester', ['--json', ...args, '--idempotency-key', 'cli-replay-1']);
    expect(again.code, again.stderr).toBe(0);
    expect(parse(again)).toMatchObject({ replayed: true, operation: { id: parse(first).operation.id } });
    const text = await as('requester', [...args, '--idempotency-key', 'cli-replay-1']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain('A replay: idempotency key cli-replay-1 made this operation before');
  });

  it('status lists the items an operation did not finish, with their errors', async () => {
    const ids = appsOf([27], 2);
    h.downstream.failOnly(['softDelete']);
    h.downstream.failNext(1, 422);
    let id: string;
    try {
      const op = await submitAndStart(h, {
        ids,
        rollout: { bakeSeconds: 0, waves: ['100%'], restoreDrill: false },
        haltPolicy: { probe: 'optional', maxFailureRate: 1 },
      });
      expect((await waitForState(h, op.id, ['completed_with_failures', 'completed', 'halted'])).state).toBe(
        'completed_with_failures',
      );
      id = op.id;
    } finally {
      h.downstream.failOnly(null);
    }
    const r = await as('viewer', ['status', id]);
    expect(r.code, r.stderr).toBe(0);
    // A pipeline that asks gets the outcome as the exit code, as `watch` maps it (11 here).
    const strict = await as('viewer', ['status', '--exit-status', id]);
    expect(strict.code, strict.stderr).toBe(11);
    expect(strict.stdout).toBe(r.stdout);
    expect(r.stdout).toContain('  unfinished: 1 item(s)\n');
    expect(r.stdout).toMatch(/\n {4}app_00027_0[01] \(tenant_00027, failed\): .*422/);
  });

  it("names a bad line by the ID list's own line number (blank lines counted), not the body's", async () => {
    const file = join(dir, `ids-${++n}.ndjson`);
    await writeFile(file, ['"app_00006_00"', '', '  ', '{"id": 7}', '"app_00006_01"'].join('\n') + '\n');
    const args = ['submit', '--type', 'app', '--reason', 'Bad line', '--ticket', 'CHG-11', '--ids-file', file];
    const r = await as('requester', args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/400 INVALID_ID: Line 4 of the ID list must be a JSON string/);
    const j = jsonError(await as('requester', ['--json', ...args]));
    expect(j.error).toMatchObject({ code: 'INVALID_ID', status: 400, details: { line: 4 } });
  });

  it("names an invalid ID and a rejected one by the ID list's own line too (blank lines counted)", async () => {
    const file = join(dir, `ids-${++n}.txt`);
    await writeFile(file, ['app_00006_02', '', 'app 00006', 'app_00006_03'].join('\n') + '\n');
    const args = ['submit', '--type', 'app', '--reason', 'Bad ID', '--ticket', 'CHG-12', '--ids-file', file];
    const r = await as('requester', args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/400 INVALID_IDS: .*at index 1 \(line 3 of the ID list\)/);
    const j = jsonError(await as('requester', ['--json', ...args]));
    expect(j.error).toMatchObject({ details: { invalid: [{ index: 1, line: 3 }] } });

    const unknown = join(dir, `ids-${++n}.txt`);
    await writeFile(unknown, ['', 'app_00006_04', '', '', 'app_00099_99'].join('\n') + '\n');
    const plan = ['plan', '--type', 'app', '--reason', 'Unknown ID', '--ticket', 'CHG-13', '--ids-file', unknown];
    const rej = await as('requester', plan);
    expect(rej.code, rej.stderr).toBe(10);
    expect(rej.stderr).toContain('app_00099_99 (line 5)');
  });

  it('restore --wait prints the operation, its plan and who does what next before it waits', async () => {
    const del = await submitAndStart(h, {
      targetType: 'app',
      reason: 'To be restored',
      ids: appsOf([33], 2),
      rollout: { bakeSeconds: 0, waves: ['100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional' },
    });
    expect((await waitForState(h, del.id, ['completed', 'halted', 'rolled_back'])).state).toBe('completed');
    const args = ['restore', '--operation', del.id, '--reason', 'Bring them back', '--ticket', 'INC-31'];
    // Nobody approves it here: the wait ends on its --timeout (13). It printed only the progress
    // lines, so the ID the approver and the operator need had to be found in GET /v1/operations.
    const r = await as('requester', [...args, '--wait', '--timeout', '2s']);
    expect(r.code, r.stderr).toBe(13);
    const id = /Operation (op_\S+) \(restore\) is planned\./.exec(r.stdout)?.[1];
    expect(id, r.stdout).toBeTruthy();
    expect(r.stdout).toContain(`Next: blastgate approve ${id}, then blastgate start ${id}`);
    // Out of a timer's range, or none at all: a usage error before anything is sent.
    for (const timeout of ['9999999h', '0'])
      expect((await as('requester', [...args, '--wait', '--timeout', timeout])).code).toBe(2);
    const dirList = await as('requester', [
      'submit',
      '--type',
      'app',
      '--reason',
      'Dir',
      '--ticket',
      'T-1',
      '--ids-file',
      dir,
    ]);
    expect(dirList.code, dirList.stderr).toBe(2);
    expect(dirList.stderr).toContain(`cannot read the ID list ${dir}: it is a directory`);
  });

  it.each(['restore', 'purge'])(
    "%s (IDs sent inline) names every invalid ID and a rejected one by the ID list's own line",
    async (verb) => {
      const file = join(dir, `ids-${++n}.txt`);
      await writeFile(file, ['app_00006_02', '', 'app 00006', '', '', 'app 00007'].join('\n') + '\n');
      const args = [verb, '--type', 'app', '--reason', 'Bad ID', '--ticket', 'INC-12', '--ids-file', file, '--dry-run'];
      const r = await as('requester', args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/400 INVALID_IDS: 2 submitted ID\(s\) .*at index 1 \(line 3 of the ID list\)/);
      expect(r.stderr).toContain('  line 3: app 00006 (contains U+0020 SPACE at position 3)\n');
      expect(r.stderr).toContain('  line 6: app 00007 (contains U+0020 SPACE at position 3)\n');
      const j = jsonError(await as('requester', ['--json', ...args]));
      expect(j.error).toMatchObject({
        code: 'INVALID_IDS',
        details: {
          invalid: [
            { index: 1, line: 3 },
            { index: 2, line: 6 },
          ],
        },
      });

      const unknown = join(dir, `ids-${++n}.txt`);
      await writeFile(unknown, ['', 'app_00099_98', '', 'app_00099_99'].join('\n') + '\n');
      const rejArgs = [
        verb,
        '--type',
        'app',
        '--reason',
        'Unknown IDs',
        '--ticket',
        'INC-13',
        '--ids-file',
        unknown,
        '--dry-run',
      ];
      const rej = jsonError(await as('requester', ['--json', ...rejArgs]));
      expect(rej.error.code, JSON.stringify(rej.error)).toBe('PLAN_REJECTED');
      expect((rej.error.details as { offenders: { unknown: unknown[] } }).offenders.unknown).toEqual([
        expect.objectContaining({ id: 'app_00099_98', index: 0, line: 2 }),
        expect.objectContaining({ id: 'app_00099_99', index: 1, line: 4 }),
      ]);
      // Said to a person: the offenders by line, and the command that records the rejection is this
      // one without --dry-run — never `submit`, which would plan a DELETE of the same IDs.
      const human = await as('requester', rejArgs);
      expect(human.code, human.stderr).toBe(10);
      expect(human.stderr).toContain('app_00099_98 (line 2), app_00099_99 (line 4)');
      expect(human.stderr).toContain(`the same \`blastgate ${verb}\` without --dry-run records the rejection`);
      expect(human.stderr).not.toContain('blastgate submit');
      expect(human.stderr).toContain('Fix the list before running it for real.');
      // The same list on stdin, without --ids-file, as README says IDs come (a trial was refused).
      const piped = await as(
        'requester',
        ['--json', ...rejArgs.filter((a) => a !== '--ids-file' && a !== unknown)],
        ['', 'app_00099_98', '', 'app_00099_99'].join('\n'),
      );
      expect(jsonError(piped).error.code, piped.stderr).toBe('PLAN_REJECTED');
    },
  );

  it("names the flag, not the body's spec line, when the server refuses what a flag gave", async () => {
    const file = join(dir, `ids-${++n}.txt`);
    await writeFile(file, 'app_00006_05\n');
    const args = [
      'plan',
      '--type',
      'app',
      '--reason',
      'x',
      '--ticket',
      'CHG-14',
      '--waves',
      '1,abc',
      '--ids-file',
      file,
    ];
    // A 400: the flags are at fault, a usage error (exit 2), as the CLI's own checks are.
    const r = await as('requester', args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/400 VALIDATION_FAILED: Invalid --reason: /);
    expect(r.stderr).not.toContain('line 1');
    const j = jsonError(await as('requester', ['--json', ...args]));
    expect(j.error).toMatchObject({ details: expect.arrayContaining([expect.objectContaining({ flag: '--reason' })]) });
    const waves = await as('requester', [...args.slice(0, 4), 'Bad waves', ...args.slice(5)]);
    expect(waves.code, waves.stderr).toBe(2);
    expect(waves.stderr).toMatch(/400 VALIDATION_FAILED: Invalid --waves "abc": must be a number of tenants/);
    // Operator commands too.
    const pause = await as('operator', ['pause', 'op_doesnotexist', '--reason', 'x']);
    expect(pause.code, pause.stderr).toBe(2);
    expect(pause.stderr).toMatch(/400 VALIDATION_FAILED: Invalid --reason: /);
  });

  it('submit --auto-start names only the approval as the next step (the approvals start it)', async () => {
    const file = await idsFile(appsOf([38], 1));
    const r = await as('requester', [
      'submit',
      '--type',
      'app',
      '--reason',
      'Starts itself',
      '--ticket',
      'CHG-12',
      '--ids-file',
      file,
      '--auto-start',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /Next: an approver runs {2}blastgate approve op_\S+ {2}\(it starts once the approvals are in\)/,
    );
    expect(r.stdout).not.toMatch(/blastgate start/);
  });

  it('purge of a tenant whose deleted resources were all left out prints the server\'s count of them, not "nothing is deleted"', async () => {
    // Site 39 and its apps deleted; the site is due, and both apps are active again (an import):
    // the site, deleted and not purged, is kept for them (children_kept) and nothing is left to purge.
    const del = await deleteSitesOf(h, [39]);
    expect((await waitForState(h, del.id, ['completed', 'completed_with_failures', 'halted'])).state).toBe('completed');
    await query(h.databaseUrl, `UPDATE resources SET purge_after = now() - interval '1 day' WHERE id = $1`, [
      siteId(39),
    ]);
    await request(h.app.server)
      .post('/v1/registry/resources')
      .set('authorization', h.auth('admin'))
      .send({
        resources: appsOf([39], 2).map((id) => ({
          id,
          type: 'app',
          tenantId: tenantId(39),
          parentId: siteId(39),
          state: 'active',
        })),
      })
      .expect(200);
    const args = ['purge', '--tenant', tenantId(39), '--reason', 'Retention ended', '--ticket', 'CHG-39', '--dry-run'];
    const r = await as('requester', args);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(
      `blastgate: 422 NOTHING_TO_PURGE: The only deleted resource in this scope was left out: 1 children_kept (kept because a child of it is not purged with it: within its retention, live, moved, or of a tenant a later wave takes: ${siteId(39)}); nothing to purge; 2 resource(s) of it are active again`,
    );
    expect(r.stderr).not.toContain('Nothing in this scope is deleted');
    const j = jsonError(await as('requester', ['--json', ...args]));
    expect(j.error).toMatchObject({
      code: 'NOTHING_TO_PURGE',
      details: { leftOut: { childrenKept: 1, activeAgain: 2 } },
    });
  });

  it('report on a plan that was not rejected says there is nothing to report', async () => {
    const op = await submitted(appsOf([16], 1));
    const r = await as('viewer', ['report', op.id]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${op.id} has no offending IDs: its plan was not rejected`);
  });

  it('a halt that rolls back exits 11 (start --wait), and --json gives one document with the outcome', async () => {
    const op = await submitted(appsOf([10, 11, 12, 13, 14, 15], 2), [
      '--waves',
      '1,100%',
      '--halt-policy',
      JSON.stringify({ onHalt: 'rollback', minSample: 2, maxConsecutiveFailures: 2, maxFailureRate: 0.05 }),
    ]);
    expect((await as('approver', ['approve', op.id, '--yes'])).code).toBe(0);
    h.downstream.failOnly(['softDelete']);
    h.downstream.failAll(500);
    const r = await as('operator', ['--json', 'start', op.id, '--reason', 'Go ahead', '--wait', '--timeout', '180s']);
    expect(r.code, r.stderr).toBe(11);
    const doc = parse(r);
    expect(doc.outcome).toMatchObject({ state: 'rolled_back', exitCode: 11, timedOut: false });
    expect(doc.outcome.haltReason).toBeTruthy();
    // The second wave's items were never sent: on a rolled-back operation, "pending 10" read as
    // work still queued (a trial). The ledger state stays pending; the words say what it means.
    const status = await as('viewer', ['status', op.id]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/\n {2}wave 2: never run 10\n/);
    expect(status.stdout).not.toMatch(/\bpending\b/);
  });

  it('submit --via-queue through the real intake worker: planned (0), then rejected (10) with its report', async () => {
    const viaQueue = (ids: string[], key: string, token = h.tokens.requester) =>
      runCli(
        ['--json', 'submit', '--via-queue', '--type', 'app', '--reason', 'From a pipeline', '--ticket', 'CI-7'].concat([
          '--idempotency-key',
          key,
          '--queue-prefix',
          h.prefix,
          '--redis-url',
          h.redisUrl,
        ]),
        { url, token, input: ids.join('\n') + '\n' },
      );
    const ok = await viaQueue(appsOf([35], 2), 'cli-queue-ok');
    expect(ok.code, ok.stderr).toBe(0);
    const { operation } = parse(ok) as { operation: { id: string; state: string; planHash: string } };
    expect(operation.state).toBe('planned');
    expect(parse(ok)).not.toHaveProperty('replayed');
    const status = await as('viewer', ['--json', 'status', operation.id]);
    expect(parse(status)).toMatchObject({ id: operation.id, planHash: operation.planHash, itemCount: 2 });
    // The first run prints the operation whole, as REST's submit does: it printed the job's brief
    // result (id, state, planHash, plan), so `jq .operation.links.self` worked only on re-runs (a trial).
    expect(operation).toEqual(parse(status));
    // The pipeline re-run: the same command and key get the same operation back.
    const again = await viaQueue(appsOf([35], 2), 'cli-queue-ok');
    expect(again.code, again.stderr).toBe(0);
    expect((parse(again) as { operation: { id: string } }).operation.id).toBe(operation.id);
    // Another token (admin may submit) with the same key and list: the kept job, whose token the
    // worker replaced by its fingerprint, is not its answer: IDEMPOTENCY_KEY_REUSED, as REST says.
    const other = await viaQueue(appsOf([35], 2), 'cli-queue-ok', h.tokens.admin);
    expect(other.code, other.stdout).toBe(1);
    expect(jsonError(other).error).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    expect(other.stdout + other.stderr).not.toContain(operation.id);

    // A key REST used first: the queue's answer is that operation, said to be a replay (it was not).
    const rest = await as('requester', [
      '--json',
      'submit',
      '--type',
      'app',
      '--reason',
      'From a pipeline',
      '--ticket',
      'CI-7',
      '--ids-file',
      await idsFile(appsOf([37], 2)),
      '--idempotency-key',
      'cli-rest-first',
    ]);
    expect(rest.code, rest.stderr).toBe(0);
    const later = await viaQueue(appsOf([37], 2), 'cli-rest-first');
    expect(later.code, later.stderr).toBe(0);
    expect(parse(later)).toMatchObject({ replayed: true, operation: { id: parse(rest).operation.id } });

    const bad = await viaQueue([...appsOf([36], 1), 'app_00099_09'], 'cli-queue-bad');
    expect(bad.code, bad.stderr).toBe(10);
    const err = jsonError(bad).error;
    expect(err).toMatchObject({ code: 'PLAN_REJECTED', details: { counts: { unknown: 1 } } });
    const opId = (err.details as { operationId: string }).operationId;
    const report = await as('viewer', ['--json', 'report', opId]);
    expect(report.stdout).toContain('app_00099_09');
  });

  it('waiting: paused is exit 12, and no approval within --timeout is exit 13', async () => {
    const file = await idsFile(appsOf([21], 2));
    const timed = await as('requester', [
      '--json',
      'submit',
      '--type',
      'app',
      '--reason',
      'Nobody approves',
      '--ticket',
      'CHG-13',
      '--ids-file',
      file,
      '--wait',
      '--timeout',
      '2s',
    ]);
    expect(timed.code, timed.stderr).toBe(13);
    expect(parse(timed).outcome).toMatchObject({ state: 'planned', timedOut: true, exitCode: 13 });

    // A long bake keeps the operation baking; a watcher in the background sees the pause.
    const op = await submitted(appsOf([30, 31], 2), ['--waves', '1,100%', '--bake-seconds', '600']);
    expect((await as('approver', ['approve', op.id, '--yes'])).code).toBe(0);
    await h.app.inject({
      method: 'POST',
      url: `/v1/operations/${op.id}/start`,
      headers: { authorization: h.auth('operator') },
      payload: {},
    });
    await waitForState(h, op.id, ['baking', 'completed']);
    const watcher = watchInBackground(op.id, ['--json']);
    await watcher.connected;
    const paused = await as('operator', ['pause', op.id, '--reason', 'Checking a ticket']);
    expect(paused.code, paused.stderr).toBe(0);
    const w = await watcher.done;
    expect(w.code, w.stderr).toBe(12);
    const last = JSON.parse(w.stdout.trim().split('\n').pop()!) as { data: { state: string; haltReason: string } };
    expect(last.data).toMatchObject({ state: 'paused', haltReason: expect.stringContaining('Checking a ticket') });
  });
});
