-- On SQLite this migration stores audit records compactly (one JSON text per record, the
-- columns computed when read); PostgreSQL keeps its columns. Kept so both backends list
-- the same migrations.
SELECT 1;
