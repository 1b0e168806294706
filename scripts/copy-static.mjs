// `npm run build`: tsc compiles src/ to dist/ but copies no other files; the live view's page,
// script and stylesheet (read by the server at start-up) go along, or dist/server.js cannot start.
import { cpSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
cpSync(join(root, 'src/modules/ui/static'), join(root, 'dist/modules/ui/static'), { recursive: true });
