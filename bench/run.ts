// `npm run bench`: every figure the issues ask for, printed as tables. Bounded: fixed sizes,
// everything on 127.0.0.1, services torn down at the end.
import { benchServices, table } from './support.ts';
import { benchPlans } from './plan.ts';
import { benchExecution } from './execution.ts';

const only = process.argv[2];
const services = await benchServices();
try {
  if (!only || only === 'plan') table('Plan throughput (request → plan committed)', await benchPlans(services));
  if (!only || only === 'execution') table('Execution', await benchExecution(services));
} finally {
  services.dispose();
}
