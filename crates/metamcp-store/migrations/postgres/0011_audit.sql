-- Audit log: one row per tool call, resource read and prompt get (every face), admin
-- change, sign-in, sign-out and failed authentication. Principals are recorded by name
-- (key name, user email), never by secret. `user_id` is the user the principal belongs to
-- (a key's owner, a signed-in user), for "members see only their own"; no foreign key, so a
-- record outlives the user it names. Bounded by age and count (the gateway prunes).
CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    ts          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    face        TEXT,
    principal   TEXT,
    user_id     TEXT,
    endpoint    TEXT,
    namespace   TEXT,
    server      TEXT,
    tool        TEXT,
    duration_us BIGINT,
    outcome     TEXT NOT NULL,
    error       TEXT,
    client      TEXT,
    detail      TEXT
);
CREATE INDEX audit_log_ts ON audit_log (ts);
-- Key hygiene: when a key was last used (stamped at most once a minute per key) and when
-- it stops working (NULL: never).
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT NULL;
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT NULL;
