-- Rate limits per endpoint: at most rate_max requests per rate_seconds on the whole endpoint,
-- and client_rate_max per client_rate_seconds per client (API key, else client IP).
-- NULL (both columns of a pair) means no limit. Numbers 0 are never written.
ALTER TABLE endpoints ADD COLUMN rate_max BIGINT NULL;
ALTER TABLE endpoints ADD COLUMN rate_seconds BIGINT NULL;
ALTER TABLE endpoints ADD COLUMN client_rate_max BIGINT NULL;
ALTER TABLE endpoints ADD COLUMN client_rate_seconds BIGINT NULL;
