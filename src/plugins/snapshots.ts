// The snapshot store (encrypted, hashed, insert-only), built once with the master key.
// Building it reads nothing: the key is checked against the database where a process starts
// (server.ts, worker-runtime.ts), so an app can be built offline (npm run openapi).
import fp from 'fastify-plugin';
import { snapshotStore, type SnapshotStore } from '../modules/snapshots/store.ts';

declare module 'fastify' {
  interface FastifyInstance {
    snapshots: SnapshotStore;
  }
}

export default fp<{ masterKey: Buffer }>(
  async (app, opts) => {
    app.decorate('snapshots', snapshotStore(opts.masterKey));
  },
  { name: 'snapshots' },
);
