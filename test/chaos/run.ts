// `npm run chaos`: fault-injection trials against Blastgate running as real processes, judged by a
// Jepsen-style checker (see checker.ts). Environment:
//   CHAOS_TRIALS   number of trials (default 12: every fault kind twice, once in each phase)
//   CHAOS_SEED     makes the random choices reproducible (printed at the start)
//   CHAOS_FAULTS   comma-separated subset of fault kinds; `none` runs the no-fault sanity check
//   CHAOS_LOCK_MS  BLASTGATE_WORKER_LOCK_MS of the workers (default 2500)
//   CHAOS_ALLOW_CRASH=1  do not fail the run when the API or a worker exited on its own (such exits
//                  are always reported and the process restarted, like a process manager would;
//                  by default one fails the run: processes must outlive the faults)
// Prints a table and, last, `lost=… duplicated=… unexpected=… stuck=…`; exits 1 when any is non-zero.
import { Cluster } from './cluster.ts';
import { FAULTS, type FaultKind } from './faults.ts';
import { details, recheck, table, totals, totalsLine } from './report.ts';
import { Rng, randomSeed } from './rng.ts';
import { makePlan, runTrial, tagOf, type TrialResult } from './trial.ts';
import { sleep } from './procs.ts';

const log = (line: string) => console.log(line);

function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`${name} must be a non-negative integer (got "${v}")`);
    process.exit(2);
  }
  return n;
}

function faultsFromEnv(): FaultKind[] {
  const v = process.env.CHAOS_FAULTS;
  if (!v) return [...FAULTS];
  const kinds = v.split(',').map((s) => s.trim()) as FaultKind[];
  const known = new Set<string>([...FAULTS, 'none']);
  const bad = kinds.filter((k) => !known.has(k));
  if (bad.length) {
    console.error(`CHAOS_FAULTS: unknown kind(s) ${bad.join(', ')}; known: ${[...known].join(', ')}`);
    process.exit(2);
  }
  return kinds;
}

async function main(): Promise<number> {
  const seed = envInt('CHAOS_SEED', randomSeed());
  const trials = envInt('CHAOS_TRIALS', 12);
  const lockMs = envInt('CHAOS_LOCK_MS', 2_500);
  const faults = faultsFromEnv();
  log(`chaos: seed ${seed} (CHAOS_SEED=${seed} reproduces the plan), ${trials} trials, faults ${faults.join(', ')}`);
  const rng = new Rng(seed);
  const plan = makePlan(rng, trials, faults);

  // Set once started; the handlers below tear down whatever exists when they run.
  const running: { cluster?: Cluster } = {};
  const teardown = (why: string, code: number) => {
    console.error(`\nchaos: ${why}; stopping every process and server`);
    running.cluster?.closeSync();
    process.exit(code);
  };
  process.on('SIGINT', () => teardown('interrupted', 130));
  process.on('SIGTERM', () => teardown('terminated', 143));
  process.on('uncaughtException', (err) => {
    console.error(err);
    teardown('uncaught exception', 1);
  });
  process.on('exit', () => running.cluster?.closeSync());

  const cluster = await Cluster.start(
    {
      lockMs,
      workerConcurrency: 4,
      workers: 2,
      latencyMs: [5, 25],
      rng: rng.fork(),
      tagOf,
      log,
    },
    (c) => (running.cluster = c),
  );
  const results: TrialResult[] = [];
  try {
    for (const spec of plan) {
      const notes = await cluster.ensureHealthy();
      for (const n of notes) log(`before trial ${spec.index}: ${n}`);
      results.push(await runTrial(cluster, spec, log, results));
    }
    // Let stragglers land, then judge every trial again over the complete history.
    await sleep(2_000);
    await recheck(cluster, results);
  } finally {
    await cluster.close();
  }

  log('');
  log(details(results));
  log('');
  log(table(results));
  const perTrial = results.map((r) => (r.endedAt - r.startedAt) / 1000);
  log(
    `\n${results.length} trials, seed ${seed}; seconds per trial: median ${median(perTrial).toFixed(1)}, max ${Math.max(0, ...perTrial).toFixed(1)}; unplanned process exits: ${results.reduce((n, r) => n + r.crashes.length, 0)}${process.env.CHAOS_ALLOW_CRASH ? ' (CHAOS_ALLOW_CRASH is set: not counted as a failure)' : ''}`,
  );
  const t = totals(results);
  const crashes = results.reduce((n, r) => n + r.crashes.length, 0);
  const failOnCrash = !['1', 'true', 'yes'].includes(process.env.CHAOS_ALLOW_CRASH ?? '');
  log(totalsLine(t));
  return t.lost + t.duplicated + t.unexpected + t.stuck > 0 || (failOnCrash && crashes > 0) ? 1 : 0;
}

function median(xs: number[]): number {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
