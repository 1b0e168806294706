// What the logs never show. Fastify's request serializer logs method and URL only, but an error,
// a debug line or a future serializer may carry headers, a token creation answer or a config: the
// paths below are censored wherever they appear (pino redact, one level of wildcard).
export const LOG_REDACT = {
  paths: [
    'req.headers.authorization',
    'req.headers.cookie',
    'req.headers["x-blastgate-signature"]',
    'headers.authorization',
    'headers.cookie',
    'headers["x-blastgate-signature"]',
    '*.headers.authorization',
    '*.headers.cookie',
    'authorization',
    '*.authorization',
    // API token secrets (token creation and rotation answers), admin and metrics tokens.
    'token',
    '*.token',
    'adminToken',
    '*.adminToken',
    'metricsToken',
    '*.metricsToken',
    // Downstream signing secrets (a SigningSecrets object already prints as names only).
    'secret',
    '*.secret',
    'signingSecret',
    '*.signingSecret',
    'password',
    '*.password',
  ],
  censor: '[redacted]',
};

/** Pino options with the redaction added; `false` (no logger) stays false. */
export function withRedaction<T extends boolean | object>(logger: T): T {
  return typeof logger === 'object' ? { ...logger, redact: LOG_REDACT } : logger;
}
