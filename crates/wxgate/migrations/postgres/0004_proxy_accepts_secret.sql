-- Proxy mode: whether the token endpoints also take the app's real secret (not only a wxgate
-- key) in the secret slot. Off unless an operator turns it on for a migration.
ALTER TABLE apps ADD COLUMN proxy_accepts_secret BOOLEAN NOT NULL DEFAULT FALSE;
