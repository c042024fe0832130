-- OAuth 2.1 for endpoints (the MCP authorization spec): the gateway is the authorization
-- server, each endpoint with oauth_auth a protected resource.
--
-- Codes and refresh tokens are stored only as SHA-256 (hex). Access tokens are signed and
-- short-lived, never stored. A grant is one user's consent to one client for one endpoint:
-- the family of refresh tokens hangs off it, and revoking it ends them all. None of these
-- rows is configuration: writing them never bumps config_version.
ALTER TABLE endpoints ADD COLUMN oauth_auth BIGINT NOT NULL DEFAULT 0;

-- Clients registered dynamically (RFC 7591). Clients identified by a metadata document
-- (CIMD, an https URL) are fetched and cached in memory, not stored.
CREATE TABLE oauth_clients (
    client_id     TEXT PRIMARY KEY NOT NULL,
    client_name   TEXT,
    redirect_uris TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    created_from  TEXT
);

-- Authorization codes: single use (taken with DELETE … RETURNING), a minute at most.
CREATE TABLE oauth_codes (
    code_hash      TEXT PRIMARY KEY NOT NULL,
    client_id      TEXT NOT NULL,
    client_name    TEXT,
    user_id        TEXT NOT NULL,
    endpoint_id    TEXT NOT NULL,
    resource       TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scope          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);

CREATE TABLE oauth_grants (
    id             TEXT PRIMARY KEY NOT NULL,
    client_id      TEXT NOT NULL,
    client_name    TEXT,
    user_id        TEXT NOT NULL,
    endpoint_id    TEXT NOT NULL,
    resource       TEXT NOT NULL,
    scope          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    last_used_at   BIGINT,
    revoked_at     BIGINT,
    revoked_reason TEXT
);
CREATE INDEX oauth_grants_user ON oauth_grants (user_id);

-- Every refresh token of a grant; a used one is superseded, and presenting it again
-- revokes the grant (reuse detection).
CREATE TABLE oauth_refresh_tokens (
    token_hash    TEXT PRIMARY KEY NOT NULL,
    grant_id      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    superseded_at BIGINT
);
CREATE INDEX oauth_refresh_tokens_grant ON oauth_refresh_tokens (grant_id);
