#!/usr/bin/env node
// Launcher of the blastgate CLI (src/cli/main.ts). The CLI is TypeScript run through tsx (a
// runtime dependency), registered for this process only, so the same files run from a checkout
// and from the npm tarball on Node 20, 22 and 24.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
await main(process.argv);
