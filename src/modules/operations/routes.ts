import type { App } from '../../lib/schemas.ts';

export default async function operationRoutes(_app: App) {
  // filled in by the operations module
}
