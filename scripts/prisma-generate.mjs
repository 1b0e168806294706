// Runs `prisma generate` offline. The Prisma CLI insists on a native schema engine that it would
// download from a host this project cannot reach; `generate` never uses it, so a stub that only
// answers `--version` is enough (see ../shared/STACK.md).
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// Installed from the npm tarball (the blastgate CLI only): no schema, no Prisma client to generate.
if (!existsSync(join(root, 'prisma', 'schema.prisma'))) process.exit(0);
const stubDir = join(root, 'node_modules', '.cache', 'blastgate');
const stub = join(stubDir, 'schema-engine-stub');
if (!existsSync(stub)) {
  mkdirSync(stubDir, { recursive: true });
  writeFileSync(
    stub,
    '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "schema-engine-cli 0edf323efd1d98336f3f0a68684b56f689b900d3"; exit 0; fi\necho "native schema engine unavailable offline; use npm run db:migrate" >&2\nexit 1\n',
  );
  chmodSync(stub, 0o755);
}
const prismaBin = join(root, 'node_modules', 'prisma', 'build', 'index.js');
const result = spawnSync(process.execPath, [prismaBin, 'generate'], {
  cwd: root,
  stdio: 'inherit',
  env: {
    ...process.env,
    PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? stub,
    PRISMA_HIDE_UPDATE_MESSAGE: '1',
    CHECKPOINT_DISABLE: '1',
  },
});
process.exit(result.status ?? 1);
