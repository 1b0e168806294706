import { configDefaults, defineConfig } from 'vitest/config';

// Test files that keep a worker process of their own, as every file did before: the ones that
// mock a module (route-auth mocks `fastify`, which a shared module cache would have loaded
// already), and the ones whose time is spent in child processes (embedded starts, the CLI, worker
// processes, the chaos cluster, Chromium) and whose kill points and timings were tuned in a small,
// fresh test process. Sharing a worker would save them little: their cost is not the import.
const OWN_PROCESS = [
  'test/http/route-auth.test.ts',
  'test/embedded/**/*.test.ts',
  'test/cli/**/*.test.ts',
  'test/chaos/**/*.test.ts',
  'test/ui/**/*.test.ts',
  'test/execution/kill.test.ts',
  'test/execution/postgres-restart.test.ts',
  'test/execution/postgres-freeze.test.ts',
  'test/execution/redis-restart.test.ts',
  'test/execution/outage-logs.test.ts',
  'test/execution/shutdown-redis-gone.test.ts',
  'test/execution/worker-nice.test.ts',
  'test/execution/worker-start.test.ts',
  'test/execution/halt-under-load.test.ts',
];

// Set on each project, not on the root: a project that extends the root would run the root's
// global setup again (a PostgreSQL and a Redis per project).
const common = {
  pool: 'forks' as const,
  testTimeout: 60_000,
  hookTimeout: 120_000,
};

export default defineConfig({
  test: {
    // One PostgreSQL (template database) and one Redis for the whole run, shared by both projects.
    globalSetup: ['test/support/global-setup.ts'],
    // For the run as a whole: both projects' files share these two workers.
    maxWorkers: 2,
    reporters: ['default'],
    projects: [
      {
        test: {
          ...common,
          name: 'shared',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...OWN_PROCESS],
          // Test files run one after another in the same worker process and reuse its module cache,
          // instead of loading the app's module graph again for each file: that loading was about a
          // quarter of the suite's time on 2 cores. Every file still builds its own app, database
          // (cloned from the template), queue prefix and servers, and closes them.
          isolate: false,
        },
      },
      {
        test: {
          ...common,
          name: 'own-process',
          include: OWN_PROCESS,
          isolate: true,
        },
      },
    ],
  },
});
