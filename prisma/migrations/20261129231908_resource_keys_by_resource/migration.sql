-- CreateIndex
CREATE INDEX "resource_keys_resource_id_idx" ON "resource_keys"("resource_id");
