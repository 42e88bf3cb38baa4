-- Listeners (same shape on sqlite/ and postgres/): a connector that listens to what its
-- service pushes (Mastodon's streaming API) holds one long-lived connection, on one process:
-- the process that claimed it (`listener_owner`, random per process) until `listener_until`
-- (Unix ms), renewed while it listens; a crashed process's claims run out. `listening_at`:
-- when its connection came up (NULL while it is not connected).
ALTER TABLE connectors ADD COLUMN listener_owner TEXT;
ALTER TABLE connectors ADD COLUMN listener_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connectors ADD COLUMN listening_at INTEGER;
CREATE INDEX connectors_listeners ON connectors (kind, listener_until);
