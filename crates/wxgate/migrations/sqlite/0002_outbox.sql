-- The durable outbox: campaigns, messages waiting to be pushed, and the delivery log (attempts).
-- Same conventions as 0001: integer epoch milliseconds, text ids, so the PostgreSQL migration
-- mirrors this one column for column (INTEGER PRIMARY KEY → BIGINT GENERATED ALWAYS AS
-- IDENTITY, 0/1 flags → BOOLEAN). Partial indexes, CHECKs and ON CONFLICT work in both.
--
-- `app` is deliberately not a foreign key to `apps`: deleting an app must not fail, nor delete
-- its delivery history. Messages of a deleted app are failed by the worker that claims them.

-- One template sent to many recipients. "done" is not a status: it is derived from the counts
-- (nothing pending or sending).
CREATE TABLE campaigns (
    id            TEXT PRIMARY KEY,
    app           TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('template', 'subscribe', 'wecom')),
    template      TEXT NOT NULL,      -- template_id, or the WeCom msgtype
    total         INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('running', 'cancelled')),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- One message to one recipient. `body` is the full WeChat JSON body, opaque to the store.
CREATE TABLE messages (
    id                  TEXT PRIMARY KEY,
    app                 TEXT NOT NULL,
    kind                TEXT NOT NULL CHECK (kind IN ('template', 'subscribe', 'wecom')),
    campaign_id         TEXT REFERENCES campaigns (id),
    recipient           TEXT NOT NULL,
    template            TEXT NOT NULL,
    body                TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN
                            ('pending', 'sending', 'sent', 'failed', 'unknown', 'cancelled')),
    -- When a worker should next look at the row: send_at or the next retry while pending, the
    -- end of the lease while sending (always equal to lease_until_ms then). One index over
    -- (due_at_ms) of the active rows thus finds both due work and leases of dead workers.
    due_at_ms           INTEGER NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,  -- attempts counted against the retry budget
    claims              INTEGER NOT NULL DEFAULT 0,  -- times claimed; never decreases
    first_claimed_at_ms INTEGER,                     -- set by the first claim, never changed
    -- `claims` of the latest claim that took over an expired lease (its worker vanished
    -- mid-send, so WeChat may already have the message); NULL if that never happened.
    takeover_claim      INTEGER,
    lease_owner         TEXT,             -- instance of the latest claim (kept after it ends)
    lease_token         TEXT,             -- fencing value of the latest claim: "{claims}.{nonce}"
    lease_until_ms      INTEGER,          -- set exactly while state = 'sending'
    errcode             INTEGER,          -- of the latest outcome; NULL when sent or unknown
    reason              TEXT,             -- why it failed / is unknown / waits for a retry
    msgid               TEXT,             -- WeChat's msgid once sent (OA: u64 as text; WeCom: text)
    -- Idempotency-Key of a single message, unique per app; the hash of the request it came with
    -- tells a replay (same request) from a conflicting reuse of the key.
    idempotency_key     TEXT,
    request_hash        TEXT,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    CHECK ((state = 'sending') = (lease_until_ms IS NOT NULL)),
    CHECK (state <> 'sending' OR due_at_ms = lease_until_ms),
    CHECK ((idempotency_key IS NULL) = (request_hash IS NULL))
);

-- Claiming (oldest due first, app by app so a paused app's backlog is never stepped over),
-- expired leases, next_due_ms and queue_depth: only active rows, so the index stays as small as
-- the queue however long the history grows. `state` makes it covering for the depth counts.
CREATE INDEX messages_due ON messages (app, due_at_ms, state)
    WHERE state IN ('pending', 'sending');

-- A campaign never holds one recipient twice (invariant 8).
CREATE UNIQUE INDEX messages_campaign_recipient ON messages (campaign_id, recipient)
    WHERE campaign_id IS NOT NULL;

-- The same Idempotency-Key returns the first message; scoped per app.
CREATE UNIQUE INDEX messages_idempotency ON messages (app, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Campaign counts, cancel, retry-failed, and listing by campaign (+ state) in id order.
CREATE INDEX messages_campaign_state ON messages (campaign_id, state, id)
    WHERE campaign_id IS NOT NULL;

-- Listing by app (+ state) in id order.
CREATE INDEX messages_app_state ON messages (app, state, id);

-- Listing by errcode: only rows that have one.
CREATE INDEX messages_errcode ON messages (errcode, id) WHERE errcode IS NOT NULL;

-- The delivery log: every attempt at calling WeChat, including those of a worker whose lease had
-- been taken over meanwhile (`fenced` = 1: the call happened, its result was not applied).
CREATE TABLE attempts (
    id         INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at_ms      INTEGER NOT NULL,
    instance   TEXT NOT NULL,
    latency_ms INTEGER NOT NULL,
    errcode    INTEGER,                   -- NULL: no WeChat answer (transport error, timeout)
    errmsg     TEXT,
    msgid      TEXT,
    outcome    TEXT NOT NULL,             -- sent | retry | refresh | window | failed | unknown
    detail     TEXT,
    fenced     INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX attempts_message ON attempts (message_id, id);
