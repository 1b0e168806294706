// Where the browser tests find Chromium: BLASTGATE_CHROMIUM, or the usual install paths (.ci/run
// installs Debian's `chromium`). No browser is downloaded; a missing one fails the test, it is
// never skipped.
import { existsSync } from 'node:fs';

const USUAL = [
  '/usr/bin/chromium',
  '/usr/bin/chromium-browser',
  '/usr/bin/google-chrome',
  '/usr/bin/google-chrome-stable',
];

export function findChromium(): string {
  const given = process.env.BLASTGATE_CHROMIUM;
  if (given) {
    if (!existsSync(given)) throw new Error(`BLASTGATE_CHROMIUM=${given} does not exist`);
    return given;
  }
  const found = USUAL.find((p) => existsSync(p));
  if (!found)
    throw new Error(
      `no Chromium at ${USUAL.join(', ')}: install Debian's chromium (apt-get install chromium) or set BLASTGATE_CHROMIUM`,
    );
  return found;
}
