import type { PrismaClient } from '../../generated/prisma/client.ts';
import type { Role } from './roles.ts';

export function tokenRepository(prisma: PrismaClient) {
  return {
    findActiveByHash: (tokenHash: string) =>
      prisma.apiToken.findFirst({
        where: { tokenHash, revokedAt: null },
        select: { id: true, name: true, role: true },
      }),
    create: (data: { name: string; role: Role; tokenHash: string; createdBy: string | null }) =>
      prisma.apiToken.create({ data }),
    upsertBootstrap: (tokenHash: string) =>
      prisma.apiToken.upsert({
        where: { tokenHash },
        update: { revokedAt: null },
        create: { name: 'bootstrap-admin', role: 'admin', tokenHash, createdBy: null },
      }),
    list: () => prisma.apiToken.findMany({ orderBy: { createdAt: 'asc' } }),
    revoke: (id: string) =>
      prisma.apiToken.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: new Date() } }),
    findById: (id: string) => prisma.apiToken.findUnique({ where: { id } }),
  };
}

export type TokenRepository = ReturnType<typeof tokenRepository>;
