-- A delivery waits for any earlier delivery of its endpoint not yet tried (src/modules/webhooks/runtime.ts,
-- earlierUntried): one probe of the endpoint's few pending deliveries, not a scan of its whole history.
CREATE INDEX "webhook_deliveries_pending" ON "webhook_deliveries" ("endpoint_id", "id") WHERE "status" = 'pending';
