-- AlterTable
ALTER TABLE "snapshots" ADD COLUMN     "ciphertext" BYTEA,
ADD COLUMN     "iv" BYTEA,
ADD COLUMN     "tag" BYTEA;

-- prisma/sql/snapshots_inline_content.sql
-- A snapshot's encrypted content is in its own row (one row to write per snapshot instead of two,
-- with their index entries: the largest cost of a delete wave). Rows written before keep theirs in
-- snapshot_contents and stay readable. NOT VALID: the check applies to rows inserted from now on.
ALTER TABLE "snapshots" ADD CONSTRAINT snapshots_content_inline
  CHECK ("iv" IS NOT NULL AND "tag" IS NOT NULL AND "ciphertext" IS NOT NULL) NOT VALID;
