-- The core mesh: users, endpoints (devices), tokens, feed keys, collections, items, changes, blobs.
-- Integers are 64-bit; times are Unix seconds; booleans are 0/1. Same shape as postgres/.
CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    head_seq    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

CREATE TABLE endpoints (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL DEFAULT 'device',
    created_at  INTEGER NOT NULL,
    UNIQUE (user_id, name)
);

CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY,
    endpoint_id  INTEGER NOT NULL REFERENCES endpoints(id),
    token_hash   TEXT    NOT NULL UNIQUE,
    prefix       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);

CREATE TABLE feed_keys (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    feed_path   TEXT    NOT NULL,
    key_hash    TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE collections (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (user_id, name)
);

-- The merged complete copy of each item; seq = the user's change that last touched it.
CREATE TABLE items (
    id             INTEGER PRIMARY KEY,
    collection_id  INTEGER NOT NULL REFERENCES collections(id),
    sync_id        TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    changed_at     INTEGER NOT NULL,
    deleted        INTEGER NOT NULL,
    conflicts      INTEGER NOT NULL,
    document       TEXT    NOT NULL,
    UNIQUE (collection_id, sync_id)
);
CREATE INDEX items_by_seq ON items (collection_id, seq);

-- Every accepted create/update/delete/conflict, per user, in order; version = the item after it.
CREATE TABLE changes (
    user_id        INTEGER NOT NULL REFERENCES users(id),
    seq            INTEGER NOT NULL,
    collection_id  INTEGER NOT NULL REFERENCES collections(id),
    sync_id        TEXT    NOT NULL,
    endpoint_id    INTEGER REFERENCES endpoints(id),
    kind           TEXT    NOT NULL,
    at             INTEGER NOT NULL,
    version        TEXT    NOT NULL,
    PRIMARY KEY (user_id, seq)
);
CREATE INDEX changes_by_endpoint ON changes (endpoint_id, seq);

CREATE TABLE blobs (
    sha256      TEXT    PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
