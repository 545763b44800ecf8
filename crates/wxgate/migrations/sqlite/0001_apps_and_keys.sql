-- Apps (WeChat accounts) and API keys. Timestamps are integer epoch milliseconds, ids are text,
-- so the PostgreSQL migration can mirror this one column for column.

-- One WeChat account. `secret_sealed` is the app secret sealed with the master key
-- ("v1:" + base64, AAD "apps:secret:{id}"); the plaintext secret is never stored.
CREATE TABLE apps (
    id                 TEXT PRIMARY KEY,
    kind               TEXT NOT NULL,     -- official_account | mini_program | wecom
    appid              TEXT,              -- OA / MP
    corpid             TEXT,              -- WeCom
    agentid            INTEGER,           -- WeCom
    token_api          TEXT NOT NULL,     -- stable | classic
    daily_fetch_budget INTEGER,           -- NULL: the global default
    secret_sealed      TEXT NOT NULL,
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL
);

-- API keys for the HTTP API. Only SHA-256 of the key is kept (looked up by hash, then compared
-- in constant time); `last4` lets an operator recognise a key in listings.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    key_hash      BLOB NOT NULL UNIQUE,
    apps          TEXT NOT NULL,          -- JSON array of app ids, or ["*"] for every app
    created_at_ms INTEGER NOT NULL,
    last4         TEXT NOT NULL
);
