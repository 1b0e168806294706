-- AlterTable
ALTER TABLE "api_tokens" ADD COLUMN     "expires_at" TIMESTAMPTZ(3),
ADD COLUMN     "scope" JSONB;

-- CreateTable
CREATE TABLE "api_token_secrets" (
    "hash" TEXT NOT NULL,
    "token_id" UUID NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "retires_at" TIMESTAMPTZ(3),

    CONSTRAINT "api_token_secrets_pkey" PRIMARY KEY ("hash")
);

-- CreateIndex
CREATE INDEX "api_token_secrets_token_id_idx" ON "api_token_secrets"("token_id");

-- AddForeignKey
ALTER TABLE "api_token_secrets" ADD CONSTRAINT "api_token_secrets_token_id_fkey" FOREIGN KEY ("token_id") REFERENCES "api_tokens"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- prisma/sql/token_secrets_backfill.sql
-- Each existing token's secret becomes its first row in api_token_secrets; the next migration
-- drops api_tokens.token_hash, so a token's secrets live in one place only.
INSERT INTO "api_token_secrets" ("hash", "token_id", "created_at")
SELECT "token_hash", "id", "created_at" FROM "api_tokens";
