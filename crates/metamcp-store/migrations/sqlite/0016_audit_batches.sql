-- The audit log on SQLite stores each batch the gateway's writer appends as one row of
-- `audit_batches`: `recs` is a JSON array of records, each itself an array (ts, kind, face,
-- principal, user_id, endpoint, namespace, server, tool, duration_us, outcome, error,
-- client, detail; a pruned record becomes `null`), with the batch's oldest and newest
-- record time and its count of records kept. A record's id is its batch's id × 4096 + its
-- place in the batch (a batch holds at most 4,096 records), so ids grow with time as
-- before. The view `audit_log` shows one row per record with the familiar columns.
--
-- why: one row per record cost the writer a statement, a B-tree insert and an index entry
-- per record, most of what recording a call cost the gateway (measured with callgrind,
-- scripts/instructions.sh --quiet-too); a batch of records pays them once.
-- AUTOINCREMENT: a batch id is never reused, even after the newest batches were pruned.
CREATE TABLE audit_batches (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_min BIGINT NOT NULL,
    ts_max BIGINT NOT NULL,
    n      BIGINT NOT NULL,
    recs   TEXT NOT NULL
);
-- Records so far: one batch each, with the id it had (its new id is that × 4096).
INSERT INTO audit_batches (id, ts_min, ts_max, n, recs)
SELECT id, ts, ts, 1, '[[' || ts || ',' || substr(rec, 2) || ']'
FROM audit_records ORDER BY id;
DROP VIEW audit_log;
DROP TABLE audit_records;
-- Pruning by age finds the batches holding old records through it.
CREATE INDEX audit_batches_ts_min ON audit_batches (ts_min);
CREATE VIEW audit_log AS
SELECT b.id * 4096 + e.key AS id,
       e.value ->> 0 AS ts, e.value ->> 1 AS kind, e.value ->> 2 AS face,
       e.value ->> 3 AS principal, e.value ->> 4 AS user_id, e.value ->> 5 AS endpoint,
       e.value ->> 6 AS namespace, e.value ->> 7 AS server, e.value ->> 8 AS tool,
       e.value ->> 9 AS duration_us, e.value ->> 10 AS outcome, e.value ->> 11 AS error,
       e.value ->> 12 AS client, e.value ->> 13 AS detail
FROM audit_batches AS b, json_each(b.recs) AS e
WHERE e.type = 'array';
