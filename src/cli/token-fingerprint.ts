// Whose token added an intake job, without the token: the worker replaces `token` in a job's data
// with this fingerprint when it picks the job up, and the CLI (and scripts/ci-intake-example.mjs)
// compare it with their own token's before they take a kept job's outcome as theirs. A key replays
// only for the token that used it (REST's rule). A SHA-256 of the job ID and the token under a label
// of its own: not the hash tokens are looked up by, and not the same for one token in two jobs.
// Lives under src/cli: the packed CLI carries src/cli only (package.json "files").
import { createHash } from 'node:crypto';

export function intakeTokenFingerprint(jobId: string, token: string): string {
  return createHash('sha256').update(`blastgate intake token v1\n${jobId}\n${token}`).digest('hex');
}
