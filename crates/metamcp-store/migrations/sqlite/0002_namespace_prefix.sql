-- How a namespace exposes tool and prompt names: 'always' (<server>__<name>, MetaMCP's
-- scheme), 'conditional' (prefixed only when the namespace has more than one active server)
-- or 'never' (names unchanged; collisions are refused, never resolved silently).
ALTER TABLE namespaces ADD COLUMN prefix_mode TEXT NOT NULL DEFAULT 'always';
