-- This is an empty migration.

-- prisma/sql/upload_staging.sql
-- Streamed operation uploads are staged here before they are planned: one UNLOGGED table per
-- upload (named u_<base-36 epoch ms>_<random>), written a batch at a time outside any transaction
-- and dropped once the plan has read it. The tables are created and dropped by the API at run
-- time, in this schema of their own so that Prisma's schema diff never sees them. UNLOGGED: the
-- IDs are worth nothing after a crash (PostgreSQL empties such tables on crash recovery), and
-- the API drops tables older than an upload can live (src/modules/operations/staging.ts).
CREATE SCHEMA IF NOT EXISTS "upload_staging";
