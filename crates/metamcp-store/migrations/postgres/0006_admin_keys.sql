-- Admin keys: a key with admin = 1 may use the admin API (/api/v1/…) as well as endpoints.
ALTER TABLE api_keys ADD COLUMN admin BIGINT NOT NULL DEFAULT 0;
