-- What the gateway last saw of each upstream (written by running gateways every few
-- seconds, read by `metamcp server list`), and operator requests to reset a server's
-- failure state (`metamcp server reset`), which running gateways apply.
CREATE TABLE server_status (
    server_id  TEXT PRIMARY KEY REFERENCES servers (id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    failures   BIGINT NOT NULL DEFAULT 0,
    restarts   BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    pid        BIGINT,
    updated_at BIGINT NOT NULL
);

CREATE TABLE server_resets (
    server_id    TEXT PRIMARY KEY REFERENCES servers (id) ON DELETE CASCADE,
    requested_at BIGINT NOT NULL
);
