-- The core mesh: users, endpoints (devices), tokens, feed keys, collections, items, changes, blobs.
-- Integers are 64-bit; times are Unix seconds; booleans are 0/1. Same shape as sqlite/.
CREATE TABLE users (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    head_seq    BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);

CREATE TABLE endpoints (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users(id),
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL DEFAULT 'device',
    created_at  BIGINT NOT NULL,
    UNIQUE (user_id, name)
);

CREATE TABLE tokens (
    id           BIGSERIAL PRIMARY KEY,
    endpoint_id  BIGINT NOT NULL REFERENCES endpoints(id),
    token_hash   TEXT    NOT NULL UNIQUE,
    prefix       TEXT    NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);

CREATE TABLE feed_keys (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users(id),
    feed_path   TEXT    NOT NULL,
    key_hash    TEXT    NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE collections (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users(id),
    name        TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (user_id, name)
);

-- The merged complete copy of each item; seq = the user's change that last touched it.
CREATE TABLE items (
    id             BIGSERIAL PRIMARY KEY,
    collection_id  BIGINT NOT NULL REFERENCES collections(id),
    sync_id        TEXT    NOT NULL,
    seq            BIGINT NOT NULL,
    changed_at     BIGINT NOT NULL,
    deleted        BIGINT NOT NULL,
    conflicts      BIGINT NOT NULL,
    document       TEXT    NOT NULL,
    UNIQUE (collection_id, sync_id)
);
CREATE INDEX items_by_seq ON items (collection_id, seq);

-- Every accepted create/update/delete/conflict, per user, in order; version = the item after it.
CREATE TABLE changes (
    user_id        BIGINT NOT NULL REFERENCES users(id),
    seq            BIGINT NOT NULL,
    collection_id  BIGINT NOT NULL REFERENCES collections(id),
    sync_id        TEXT    NOT NULL,
    endpoint_id    BIGINT REFERENCES endpoints(id),
    kind           TEXT    NOT NULL,
    at             BIGINT NOT NULL,
    version        TEXT    NOT NULL,
    PRIMARY KEY (user_id, seq)
);
CREATE INDEX changes_by_endpoint ON changes (endpoint_id, seq);

CREATE TABLE blobs (
    sha256      TEXT    PRIMARY KEY,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
