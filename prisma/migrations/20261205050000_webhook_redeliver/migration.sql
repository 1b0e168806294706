-- Redelivery of webhook deliveries (POST /v1/admin/webhooks/{id}/redeliver): a delivery recorded
-- failed (or cancelled) goes back to pending with a fresh series of attempts. `attempts` keeps
-- counting every POST ever sent (the receiver never has more than it says); `attempt_base` is what
-- it was when the series began, so the series ends after BLASTGATE_WEBHOOK_ATTEMPTS more.
-- `redeliver_at` marks a delivery a worker's dispatcher has still to queue (within one poll).
ALTER TABLE "webhook_deliveries" ADD COLUMN "attempt_base" INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "webhook_deliveries" ADD COLUMN "redeliver_at" TIMESTAMPTZ(3);
CREATE INDEX "webhook_deliveries_redeliver" ON "webhook_deliveries" ("id") WHERE "redeliver_at" IS NOT NULL;
