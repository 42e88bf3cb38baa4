-- Connectors: each user's own connections to outside services (same shape on sqlite/ and
-- postgres/). A connector writes what it pulls into its collection as endpoint
-- `connector-ID`; the runtime claims due rows with a lease, so a crashed run comes due again.
CREATE TABLE connectors (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users(id),
    kind           TEXT    NOT NULL,
    collection_id  INTEGER NOT NULL REFERENCES collections(id),
    -- The collection whose items it posts out (KIND-outbox), for kinds that post.
    outbox_id      INTEGER REFERENCES collections(id),
    -- Who the service says the connection is (a login, user@instance), once checked.
    account        TEXT    NOT NULL DEFAULT '',
    -- The options that are not secret, as JSON; the secret ones sealed, as JSON.
    options        TEXT    NOT NULL,
    secrets_sealed TEXT,
    -- needs-auth | active | paused | needs-reconnect | failing
    state          TEXT    NOT NULL,
    -- The connector's cursor (JSON), as its last successful pull left it.
    cursor         TEXT,
    next_at        INTEGER NOT NULL DEFAULT 0,
    claimed_until  INTEGER NOT NULL DEFAULT 0,
    failures       INTEGER NOT NULL DEFAULT 0,
    last_sync_at   INTEGER,
    last_error     TEXT,
    created_at     INTEGER NOT NULL,
    UNIQUE (user_id, id)
);
CREATE INDEX connectors_due ON connectors (next_at);
