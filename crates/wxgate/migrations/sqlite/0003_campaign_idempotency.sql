-- Campaigns take an Idempotency-Key as single messages do: the same key (per app) with the same
-- request answers the first campaign, so a cron running in two containers posts one broadcast.
-- `duplicates_skipped` is kept so a replay answers exactly what the first request was told.
ALTER TABLE campaigns ADD COLUMN idempotency_key TEXT;
ALTER TABLE campaigns ADD COLUMN request_hash TEXT;
ALTER TABLE campaigns ADD COLUMN duplicates_skipped INTEGER NOT NULL DEFAULT 0;

CREATE UNIQUE INDEX campaigns_idempotency ON campaigns (app, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
