-- Campaigns stored as they are uploaded (issue 10). On PostgreSQL an upload is one transaction
-- (rows are COPY'd into a temporary table, then inserted at the seal), so `uploading_at_ms` stays
-- NULL here; the column exists so that both backends read campaigns with the same SQL.
ALTER TABLE campaigns ADD COLUMN uploading_at_ms BIGINT;

-- One row per recipient of a campaign, WeCom userids compared case-insensitively: the index
-- drops a recipient listed again (INSERT … ON CONFLICT DO NOTHING).
DROP INDEX messages_campaign_recipient;
CREATE UNIQUE INDEX messages_campaign_recipient ON messages
    (campaign_id, (CASE WHEN kind = 'wecom' THEN lower(recipient) ELSE recipient END))
    WHERE campaign_id IS NOT NULL;
