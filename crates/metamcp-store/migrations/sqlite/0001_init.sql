-- metamcp schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql: same tables, same
-- columns, same version numbers. Portable subset only: TEXT ids (uuid v4), BIGINT epoch
-- milliseconds, BIGINT 0/1 booleans (sqlx's Any driver cannot decode SQLite BOOLEAN columns),
-- JSON as TEXT, secrets as TEXT "v1:<base64>".

CREATE TABLE servers (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL CHECK (kind IN ('STDIO', 'SSE', 'STREAMABLE_HTTP')),
    description  TEXT,
    command      TEXT,
    args         TEXT NOT NULL DEFAULT '[]',
    env          TEXT,
    url          TEXT,
    headers      TEXT,
    bearer_token TEXT,
    settings     TEXT NOT NULL DEFAULT '{}',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE namespaces (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    description TEXT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE namespace_servers (
    namespace_id TEXT NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    server_id    TEXT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    status       TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'INACTIVE')),
    position     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace_id, server_id)
);
CREATE INDEX namespace_servers_server_id ON namespace_servers (server_id);

CREATE TABLE endpoints (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL UNIQUE,
    namespace_id TEXT NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    description  TEXT,
    api_key_auth BIGINT NOT NULL DEFAULT 1,
    query_auth   BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL
);
CREATE INDEX endpoints_namespace_id ON endpoints (namespace_id);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    key_hash   TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    active     BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE tools (
    id           TEXT PRIMARY KEY NOT NULL,
    server_id    TEXT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    title        TEXT,
    description  TEXT,
    input_schema TEXT NOT NULL DEFAULT '{}',
    annotations  TEXT,
    updated_at   BIGINT NOT NULL,
    UNIQUE (server_id, name)
);

CREATE TABLE namespace_tool_mappings (
    namespace_id         TEXT NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    tool_id              TEXT NOT NULL REFERENCES tools (id) ON DELETE CASCADE,
    server_id            TEXT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    status               TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'INACTIVE')),
    override_name        TEXT,
    override_title       TEXT,
    override_description TEXT,
    override_annotations TEXT,
    PRIMARY KEY (namespace_id, tool_id)
);
CREATE INDEX namespace_tool_mappings_tool_id ON namespace_tool_mappings (tool_id);
CREATE INDEX namespace_tool_mappings_server_id ON namespace_tool_mappings (server_id);

CREATE TABLE settings (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE server_logs (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id TEXT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    ts        BIGINT NOT NULL,
    line      TEXT NOT NULL
);
CREATE INDEX server_logs_server_id_id ON server_logs (server_id, id);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('config_version', 0);
