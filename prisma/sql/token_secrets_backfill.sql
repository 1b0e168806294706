-- Each existing token's secret becomes its first row in api_token_secrets; the next migration
-- drops api_tokens.token_hash, so a token's secrets live in one place only.
INSERT INTO "api_token_secrets" ("hash", "token_id", "created_at")
SELECT "token_hash", "id", "created_at" FROM "api_tokens";
