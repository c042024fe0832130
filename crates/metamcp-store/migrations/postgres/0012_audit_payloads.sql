-- Per namespace: record tool-call arguments and results in the audit log (secrets redacted
-- by key name, size capped). Off by default: nothing of a payload is recorded.
ALTER TABLE namespaces ADD COLUMN audit_payloads BIGINT NOT NULL DEFAULT 0;
