-- Single sign-on (OIDC) logins begun and not yet finished: one row per authorization request
-- sent to the identity provider, taken (deleted) by the callback, so each is used once.
-- Only hashes of `state` and of the browser-binding cookie are stored; the PKCE verifier is
-- sealed like other secrets (v2, bound to the row's state_hash). Rows expire after minutes;
-- expired ones, and the oldest beyond a fixed cap, are purged when a login is begun.
-- Not configuration: writes here never bump meta.config_version.
CREATE TABLE oidc_logins (
    state_hash    TEXT PRIMARY KEY,
    browser_hash  TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT,
    return_to     TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);

CREATE INDEX oidc_logins_created_at ON oidc_logins (created_at);
CREATE INDEX oidc_logins_expires_at ON oidc_logins (expires_at);
