-- What connectors posted out of their outbox collections (same shape on sqlite/ and
-- postgres/): each item's id at the service and the item's sequence number last sent, so
-- an edit is sent once, a deletion reaches what was posted, and a restart posts nothing
-- twice. `outbox_seq` is how far each connector has read its outbox.
CREATE TABLE connector_posts (
    user_id       INTEGER NOT NULL REFERENCES users(id),
    connector_id  INTEGER NOT NULL,
    sync_id       TEXT    NOT NULL,
    remote_id     TEXT    NOT NULL,
    remote_url    TEXT,
    sent_seq      INTEGER NOT NULL,
    PRIMARY KEY (user_id, connector_id, sync_id)
);
ALTER TABLE connectors ADD COLUMN outbox_seq INTEGER NOT NULL DEFAULT 0;
