import { writeFileSync } from 'node:fs';
import { benchServices } from './support.ts';
import { seedBigRegistry } from './plan.ts';
const s = await benchServices();
await seedBigRegistry(s.databaseUrl);
writeFileSync('/work/lab/url', s.databaseUrl);
console.log('LAB READY', s.databaseUrl);
process.on('SIGTERM', () => { s.dispose(); process.exit(0); });
setInterval(() => undefined, 1 << 30);
