// The JSON of GET /v1/operations/{id}, serialized once per view read rather than once per request.
// Concurrent GETs of one operation share one read (routes.ts viewOf, a coalescer): at 500 GET/s in
// bursts of 50 (bench/control.ts), about one read served ten requests, and each of them serialized
// the same ~5 KB view through the response schema again (~70 µs of the API's ~750 µs of CPU per
// GET, measured with --cpu-prof on 2026-12-03). The parts a request computes itself — what the
// queue holds it on, as this process sees it, and the clock-dependent `throttled` and `waiting` —
// are the cache key beside the read, so a request never gets JSON another request's inputs made.
import type { FastifyReply } from 'fastify';
import { operationView } from './views.ts';
import { throttleOf, waitingOf } from './waiting.ts';

type ViewArgs = Parameters<typeof operationView>;
interface Read {
  op: ViewArgs[0];
  progress: ViewArgs[1];
  unfinished: ViewArgs[2];
  drills: ViewArgs[3];
  summary?: ViewArgs[5];
}

const made = new WeakMap<Read, { key: string; json: string | Buffer | ArrayBuffer }>();

/** Sends the view of read `v` with `holds`, reusing the JSON another request made of the same read. */
export function sendView(reply: FastifyReply, v: Read, holds: NonNullable<ViewArgs[4]>) {
  const key = JSON.stringify([holds, throttleOf(v.op), waitingOf(v.op, holds)]);
  let hit = made.get(v);
  if (!hit || hit.key !== key) {
    hit = { key, json: reply.serialize(operationView(v.op, v.progress, v.unfinished, v.drills, holds, v.summary)) };
    made.set(v, hit);
  }
  // Already serialized by the route's response schema: sent as it is.
  return reply
    .type('application/json; charset=utf-8')
    .serializer((s: unknown) => s as string)
    .send(hit.json);
}
