-- Accounts: people who sign in (email + password and/or single sign-on), their browser
-- sessions, and the one-time setup of the first admin.
--
-- users.email is stored lower-cased; password_hash is an Argon2id PHC string, NULL for an
-- account that only signs in through SSO. role is 'admin' or 'member'.
CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    disabled      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    last_login_at BIGINT
);

-- An identity at an OpenID provider (issuer + subject) linked to a user.
CREATE TABLE user_identities (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user_id ON user_identities (user_id);

-- A signed-in browser. The cookie holds 256 random bits; only their SHA-256 (hex) is stored.
-- A session ends at expires_at (absolute) or after the idle limit since last_seen_at.
CREATE TABLE browser_sessions (
    id_hash      TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ip           TEXT,
    user_agent   TEXT
);
CREATE INDEX browser_sessions_user_id ON browser_sessions (user_id);
CREATE INDEX browser_sessions_expires_at ON browser_sessions (expires_at);

-- The setup token `serve` prints while a fresh instance has no admin (SHA-256 hex only).
CREATE TABLE setup_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    created_at BIGINT NOT NULL
);

-- Whether the first account made on the web may become admin: only on a store created with
-- accounts (no configuration yet when this migration runs). An upgraded store gets its
-- admins from `metamcp user create --admin`.
INSERT INTO meta (key, value)
SELECT 'web_admin_setup',
       CASE WHEN EXISTS (SELECT 1 FROM servers) OR EXISTS (SELECT 1 FROM namespaces)
                 OR EXISTS (SELECT 1 FROM endpoints) OR EXISTS (SELECT 1 FROM api_keys)
            THEN 0 ELSE 1 END;
