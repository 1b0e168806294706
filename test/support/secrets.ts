// Secrets and the downstream policy of test servers (in-process apps and workers, and the worker
// child processes, which get the same values as environment variables).
import type { DownstreamPolicy } from '../../src/modules/adapters/index.ts';
import { allowlistOf } from '../../src/modules/adapters/host-allowlist.ts';
import { SigningSecrets } from '../../src/modules/adapters/signing-secrets.ts';

/** The default signing secret of test apps and workers (BLASTGATE_SIGNING_SECRET). */
export const SECRET = 'test-signing-secret-0123456789abcdef';
/** A named one (`"signingSecret": "apps-prod"`, BLASTGATE_SECRET_APPS_PROD). */
export const APPS_PROD_SECRET = 'apps-prod-test-secret-0123456789abcdef';
/** BLASTGATE_METRICS_TOKEN of test apps. */
export const METRICS_TOKEN = 'test-metrics-token-0123456789';

/**
 * What test servers may call and sign with: this machine (the test downstreams) and *.internal
 * (declaration tests that never send), the default secret and `apps-prod`.
 */
export const testDownstream = (): DownstreamPolicy => ({
  allow: allowlistOf(['127.0.0.1', 'localhost', '*.internal']),
  secrets: new SigningSecrets(new Map([['apps-prod', APPS_PROD_SECRET]]), SECRET),
});
