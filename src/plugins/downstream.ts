// The downstream systems http adapters call: which hosts this server allows and which signing
// secrets it holds. Declaring a type checks its adapter against this policy (the workers check it
// again when they build the adapter); the values of the secrets never leave this object.
import fp from 'fastify-plugin';
import type { DownstreamPolicy } from '../modules/adapters/index.ts';

declare module 'fastify' {
  interface FastifyInstance {
    downstream: DownstreamPolicy;
  }
}

export default fp<{ policy: DownstreamPolicy }>(
  async (app, opts) => {
    app.decorate('downstream', opts.policy);
  },
  { name: 'downstream' },
);
