-- Ownership: servers, namespaces, endpoints and API keys are public (owner_id NULL: made and
-- changed by admins, usable by everyone under MetaMCP's rules) or private to one user.
-- Everything that exists when this runs stays public, so an upgraded single-user store keeps
-- working as before (its admin keys included). Removing a user removes their private objects
-- in the same transaction (`Tx::remove_user`); the foreign key says so too.
ALTER TABLE servers ADD COLUMN owner_id TEXT NULL REFERENCES users (id) ON DELETE CASCADE;
ALTER TABLE namespaces ADD COLUMN owner_id TEXT NULL REFERENCES users (id) ON DELETE CASCADE;
ALTER TABLE endpoints ADD COLUMN owner_id TEXT NULL REFERENCES users (id) ON DELETE CASCADE;
ALTER TABLE api_keys ADD COLUMN owner_id TEXT NULL REFERENCES users (id) ON DELETE CASCADE;
CREATE INDEX servers_owner_id ON servers (owner_id);
CREATE INDEX namespaces_owner_id ON namespaces (owner_id);
CREATE INDEX endpoints_owner_id ON endpoints (owner_id);
CREATE INDEX api_keys_owner_id ON api_keys (owner_id);
