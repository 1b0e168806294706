# syntax=docker/dockerfile:1
# Blastgate API image. Production runs against your own PostgreSQL 15+ and Redis 7 (DATABASE_URL,
# REDIS_URL); the embedded zero-config mode of `npm start` is for a laptop, not for a container.

# --- deps: every dependency, for building. Install scripts are skipped (the Prisma CLI's would try
# to download a native engine this project never uses); the client is generated below instead.
FROM node:22-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

# --- build: generate the Prisma client into src/generated/prisma, compile src/ to dist/.
FROM deps AS build
COPY tsconfig.json tsconfig.build.json prisma.config.ts ./
COPY prisma ./prisma
COPY scripts ./scripts
COPY src ./src
RUN npm run prisma:generate && npm run build

# --- prod-deps: runtime dependencies only.
FROM node:22-slim AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime: compiled code, migrations (applied at start-up under an advisory lock) and runtime
# dependencies, owned by root and run as the unprivileged `node` user.
FROM node:22-slim AS runtime
ENV HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
COPY package.json ./
COPY --from=prod-deps /app/node_modules ./node_modules
COPY prisma ./prisma
# dist/ holds the live view's files too (/ui): `npm run build` copies them next to their routes.
COPY --from=build /app/dist ./dist
USER node
EXPOSE 3000
# node:22-slim has no curl: ask Node itself.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/server.js"]
