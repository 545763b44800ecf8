-- Campaigns stored as they are uploaded (issue 10): chunks are committed one by one while the
-- campaign is staging, then the campaign is sealed in one short transaction.

-- The last time a chunk of this campaign's upload was committed; NULL once the campaign is
-- sealed (whole, and visible). A staging campaign whose upload has not moved for minutes is
-- abandoned (its process died) and deleted by the janitor.
ALTER TABLE campaigns ADD COLUMN uploading_at_ms INTEGER;

-- One row per recipient of a campaign, with WeCom userids compared case-insensitively (as WeCom
-- treats them): the index is what drops a recipient listed again, so no process has to hold a
-- set of a million recipients. The expression is repeated verbatim where it is the conflict
-- target (store/outbox/upload.rs, RECIPIENT_KEY) and where exports page by it.
DROP INDEX messages_campaign_recipient;
CREATE UNIQUE INDEX messages_campaign_recipient ON messages
    (campaign_id, (CASE WHEN kind = 'wecom' THEN lower(recipient) ELSE recipient END))
    WHERE campaign_id IS NOT NULL;

-- 1 from the seal until every staged row of the campaign has been released (made claimable):
-- what a process that died in between must finish at its next start.
ALTER TABLE campaigns ADD COLUMN releasing INTEGER NOT NULL DEFAULT 0;
