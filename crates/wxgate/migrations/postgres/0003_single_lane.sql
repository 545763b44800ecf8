-- Single messages are claimed before campaign messages of the same app
-- (store/postgres/queue.rs, CLAIM_SINGLES), so a message sent on its own does not wait behind a
-- campaign queued before it. This index finds an app's due singles without reading past its
-- campaign rows; campaign rows are not in it, so a campaign's inserts and claims do not
-- maintain it.
CREATE INDEX messages_due_single ON messages (app, due_at_ms)
    WHERE state IN ('pending', 'sending') AND campaign_id IS NULL;
