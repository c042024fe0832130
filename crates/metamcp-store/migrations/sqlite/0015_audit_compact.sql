-- The audit log on SQLite stores each record as its time and one JSON array of the rest
-- (`rec`: kind, face, principal, user_id, endpoint, namespace, server, tool, duration_us,
-- outcome, error, client, detail) in `audit_records`; the view `audit_log` shows the
-- familiar columns, computed when read. The gateway's writer binds two values per record
-- instead of fourteen, which was most of what recording a call cost. (Generated columns
-- were measured too: SQLite computes them on every insert.) PostgreSQL keeps plain columns.
CREATE TABLE audit_records (
    id  INTEGER PRIMARY KEY,
    ts  BIGINT NOT NULL,
    rec TEXT NOT NULL
);
INSERT INTO audit_records (id, ts, rec)
SELECT id, ts, json_array(kind, face, principal, user_id, endpoint, namespace, server, tool,
                          duration_us, outcome, error, client, detail)
FROM audit_log ORDER BY id;
DROP TABLE audit_log;
CREATE INDEX audit_records_ts ON audit_records (ts);
CREATE VIEW audit_log AS
SELECT id, ts,
       rec ->> 0 AS kind, rec ->> 1 AS face, rec ->> 2 AS principal, rec ->> 3 AS user_id,
       rec ->> 4 AS endpoint, rec ->> 5 AS namespace, rec ->> 6 AS server, rec ->> 7 AS tool,
       rec ->> 8 AS duration_us, rec ->> 9 AS outcome, rec ->> 10 AS error,
       rec ->> 11 AS client, rec ->> 12 AS detail
FROM audit_records;
