-- DropIndex
DROP INDEX "api_tokens_token_hash_key";

-- AlterTable
ALTER TABLE "api_tokens" DROP COLUMN "token_hash";
