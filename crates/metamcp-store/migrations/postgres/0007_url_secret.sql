-- Upstream URLs may carry credentials (user:password@, secret-looking query parameters).
-- `url` keeps the URL with them shown as <redacted> (what listings print); `url_secret` holds
-- the full URL sealed like the other secrets (v2, bound to the row), NULL when the URL has
-- no credentials. Existing rows are moved over when the store is opened.
ALTER TABLE servers ADD COLUMN url_secret TEXT;
