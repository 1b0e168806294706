// Where a webhook may point: http or https, no credentials in the URL (they would be stored and
// shown), and a host the downstream allow-list (BLASTGATE_DOWNSTREAM_ALLOW) lets http adapters
// call: a webhook is a call out of this server like any other, so it reaches only what an admin
// allowed. Checked when an endpoint is registered or changed, and again before every delivery
// (the list may have changed since), with the same guarded DNS lookup the adapters use.
import { ALLOW_ENV, hostProblem, type HostAllowlist } from '../adapters/host-allowlist.ts';

export interface UrlProblem {
  code: 'WEBHOOK_URL_INVALID' | 'WEBHOOK_HOST_NOT_ALLOWED';
  message: string;
  allowed?: string[];
}

export const MAX_URL_LENGTH = 2048;

export function webhookUrlProblem(text: string, allow: HostAllowlist): UrlProblem | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return {
      code: 'WEBHOOK_URL_INVALID',
      message: 'url is not an absolute URL (e.g. https://hooks.example.com/blastgate)',
    };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return { code: 'WEBHOOK_URL_INVALID', message: `url must be http or https (got ${url.protocol.replace(':', '')})` };
  if (url.username !== '' || url.password !== '')
    return {
      code: 'WEBHOOK_URL_INVALID',
      message: 'url must not carry credentials (user:password@): receivers verify the signature instead',
    };
  if (url.hash !== '') return { code: 'WEBHOOK_URL_INVALID', message: 'url must not have a #fragment' };
  const why = hostProblem(allow, url.hostname);
  if (why) {
    const listed = allow.entries.length ? `${ALLOW_ENV} lists: ${allow.entries.join(', ')}` : `${ALLOW_ENV} is empty`;
    return { code: 'WEBHOOK_HOST_NOT_ALLOWED', message: `url host ${why} (${listed})`, allowed: [...allow.entries] };
  }
  return null;
}

/** What the audit log (readable by every role) records of a URL: its origin. A Slack-style URL's
 * path is itself a credential. */
export const urlOrigin = (text: string) => {
  try {
    return new URL(text).origin;
  } catch {
    return '(invalid)';
  }
};
