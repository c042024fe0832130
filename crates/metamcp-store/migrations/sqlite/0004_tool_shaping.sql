-- Tool shaping per namespace: whether tools new to an upstream arrive enabled ('ACTIVE',
-- MetaMCP's behaviour) or disabled ('INACTIVE', default-deny); an optional limit on the
-- length of exposed names (longer ones are shortened deterministically).
ALTER TABLE namespaces ADD COLUMN new_tool_status TEXT NOT NULL DEFAULT 'ACTIVE';
ALTER TABLE namespaces ADD COLUMN max_name_length BIGINT;

-- Per-namespace rules for one upstream tool, keyed by the tool's upstream name (not by a
-- discovered-tool row), so a rule can be written before the tool was ever listed and
-- survives the upstream dropping and re-adding the tool. status NULL = the namespace's
-- new_tool_status; override_* NULL = the upstream's value.
DROP TABLE namespace_tool_mappings;
CREATE TABLE namespace_tools (
    namespace_id         TEXT NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    server_id            TEXT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    tool_name            TEXT NOT NULL,
    status               TEXT CHECK (status IN ('ACTIVE', 'INACTIVE')),
    override_name        TEXT,
    override_title       TEXT,
    override_description TEXT,
    override_annotations TEXT,
    updated_at           BIGINT NOT NULL,
    PRIMARY KEY (namespace_id, server_id, tool_name)
);
CREATE INDEX namespace_tools_server_id ON namespace_tools (server_id);
