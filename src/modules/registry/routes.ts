import type { App } from '../../lib/schemas.ts';

export default async function registryRoutes(_app: App) {
  // filled in by the registry module
}
