-- OAuth towards upstream servers that need it (servers' connection settings say `oauth`).
--
-- Every token and client secret is sealed (see secrets.rs: bound to table, column and row).
-- None of these rows is configuration: writing them never bumps config_version.

-- The gateway's client at a server's authorization server: configured by an admin, or
-- registered dynamically (RFC 7591) on first use.
CREATE TABLE upstream_oauth_clients (
    server_id     TEXT PRIMARY KEY NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    client_id     TEXT NOT NULL,
    client_secret TEXT,
    scope         TEXT,
    source        TEXT NOT NULL,
    issuer        TEXT,
    created_at    BIGINT NOT NULL
);

-- Grants: the server's own (user_key '') or one user's (user_key = the user id).
-- lease_until/lease_holder: the replica refreshing it now (rotating refresh tokens race).
CREATE TABLE upstream_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    server_id     TEXT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    user_key      TEXT NOT NULL,
    access_token  TEXT NOT NULL,
    refresh_token TEXT,
    expires_at    BIGINT,
    context       TEXT NOT NULL,
    authorized_by TEXT,
    created_at    BIGINT NOT NULL,
    refreshed_at  BIGINT,
    refreshes     BIGINT NOT NULL DEFAULT 0,
    lease_until   BIGINT NOT NULL DEFAULT 0,
    lease_holder  TEXT,
    UNIQUE (server_id, user_key)
);

-- Authorizations in progress: state as SHA-256, the PKCE verifier sealed; single use.
CREATE TABLE upstream_oauth_flows (
    state_hash  TEXT PRIMARY KEY NOT NULL,
    server_id   TEXT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    user_key    TEXT NOT NULL,
    started_by  TEXT NOT NULL,
    verifier    TEXT NOT NULL,
    context     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
