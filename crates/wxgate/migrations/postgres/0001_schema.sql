-- The whole store for PostgreSQL (fleet mode): the same tables, columns and indexes as the
-- SQLite migrations 0001-0003, column for column, with PostgreSQL types: every integer is
-- BIGINT (wxgate reads them as i64), flags are BOOLEAN, hashes BYTEA. Timestamps are integer
-- epoch milliseconds and ids are text, as in SQLite. Applied at start by one instance at a time
-- (sqlx holds an advisory lock while it migrates).

-- One WeChat account. `secret_sealed` is the app secret sealed with the master key
-- ("v1:" + base64, AAD "apps:secret:{id}"); the plaintext secret is never stored.
CREATE TABLE apps (
    id                 TEXT PRIMARY KEY,
    kind               TEXT NOT NULL,     -- official_account | mini_program | wecom
    appid              TEXT,              -- OA / MP
    corpid             TEXT,              -- WeCom
    agentid            BIGINT,            -- WeCom
    token_api          TEXT NOT NULL,     -- stable | classic
    daily_fetch_budget BIGINT,            -- NULL: the global default
    secret_sealed      TEXT NOT NULL,
    created_at_ms      BIGINT NOT NULL,
    updated_at_ms      BIGINT NOT NULL
);

-- API keys. Only SHA-256 of the key is kept (looked up by hash, then compared in constant
-- time); `last4` lets an operator recognise a key in listings.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    key_hash      BYTEA NOT NULL UNIQUE,
    apps          TEXT NOT NULL,          -- JSON array of app ids, or ["*"] for every app
    created_at_ms BIGINT NOT NULL,
    last4         TEXT NOT NULL
);

-- One template sent to many recipients; see the SQLite migration 0002 for every column.
CREATE TABLE campaigns (
    id                 TEXT PRIMARY KEY,
    app                TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('template', 'subscribe', 'wecom')),
    template           TEXT NOT NULL,
    total              BIGINT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('running', 'cancelled')),
    created_at_ms      BIGINT NOT NULL,
    updated_at_ms      BIGINT NOT NULL,
    idempotency_key    TEXT,
    request_hash       TEXT,
    duplicates_skipped BIGINT NOT NULL DEFAULT 0
);

CREATE UNIQUE INDEX campaigns_idempotency ON campaigns (app, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- One message to one recipient. `app` is deliberately not a foreign key to `apps`: deleting an
-- app must not fail, nor delete its delivery history.
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
    due_at_ms           BIGINT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    claims              BIGINT NOT NULL DEFAULT 0,
    first_claimed_at_ms BIGINT,
    takeover_claim      BIGINT,
    lease_owner         TEXT,
    lease_token         TEXT,
    lease_until_ms      BIGINT,
    errcode             BIGINT,
    reason              TEXT,
    msgid               TEXT,
    idempotency_key     TEXT,
    request_hash        TEXT,
    created_at_ms       BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    CHECK ((state = 'sending') = (lease_until_ms IS NOT NULL)),
    CHECK (state <> 'sending' OR due_at_ms = lease_until_ms),
    CHECK ((idempotency_key IS NULL) = (request_hash IS NULL))
);

-- Claims (app by app, oldest due first), expired leases, next_due and queue_depth: only
-- active rows, so the index stays as small as the queue however long the history grows.
CREATE INDEX messages_due ON messages (app, due_at_ms, state)
    WHERE state IN ('pending', 'sending');

CREATE UNIQUE INDEX messages_campaign_recipient ON messages (campaign_id, recipient)
    WHERE campaign_id IS NOT NULL;

CREATE UNIQUE INDEX messages_idempotency ON messages (app, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE INDEX messages_campaign_state ON messages (campaign_id, state, id)
    WHERE campaign_id IS NOT NULL;

CREATE INDEX messages_app_state ON messages (app, state, id);

CREATE INDEX messages_errcode ON messages (errcode, id) WHERE errcode IS NOT NULL;

-- The delivery log: every attempt at calling WeChat, fenced ones included.
CREATE TABLE attempts (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at_ms      BIGINT NOT NULL,
    instance   TEXT NOT NULL,
    latency_ms BIGINT NOT NULL,
    errcode    BIGINT,
    errmsg     TEXT,
    msgid      TEXT,
    outcome    TEXT NOT NULL,
    detail     TEXT,
    fenced     BOOLEAN NOT NULL DEFAULT false
);

CREATE INDEX attempts_message ON attempts (message_id, id);
