-- Open hub and follows. SQLite cannot drop NOT NULL, so the two WebSub tables are rebuilt
-- with user_id nullable: outside topics belong to no user.
CREATE TABLE websub_subscriptions_v3 (
    id             INTEGER PRIMARY KEY,
    topic          TEXT    NOT NULL,
    callback       TEXT    NOT NULL,
    user_id        INTEGER REFERENCES users(id),
    feed           TEXT    NOT NULL,
    -- The feed key the topic URL carries: revoking it ends the subscription.
    key_hash       TEXT    NOT NULL,
    secret         TEXT,
    lease_seconds  INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    -- The user's change sequence number (for an outside topic: its version) delivered up to.
    delivered_seq  INTEGER NOT NULL,
    -- Delivery: failed attempts of the pending notification, when to try next, and a claim.
    attempts       INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    claimed_until  INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    UNIQUE (topic, callback)
);
INSERT INTO websub_subscriptions_v3 SELECT * FROM websub_subscriptions;
DROP TABLE websub_subscriptions;
ALTER TABLE websub_subscriptions_v3 RENAME TO websub_subscriptions;
CREATE INDEX websub_subscriptions_by_user ON websub_subscriptions (user_id);

CREATE TABLE websub_requests_v3 (
    id             INTEGER PRIMARY KEY,
    mode           TEXT    NOT NULL,
    topic          TEXT    NOT NULL,
    callback       TEXT    NOT NULL,
    user_id        INTEGER REFERENCES users(id),
    feed           TEXT    NOT NULL,
    -- The feed key the topic URL carries: revoking it ends the subscription.
    key_hash       TEXT    NOT NULL,
    secret         TEXT,
    lease_seconds  INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    run_at         INTEGER NOT NULL,
    claimed_until  INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
);
INSERT INTO websub_requests_v3 SELECT * FROM websub_requests;
DROP TABLE websub_requests;
ALTER TABLE websub_requests_v3 RENAME TO websub_requests;
CREATE INDEX websub_requests_due ON websub_requests (run_at);

-- Open hub: the last fetched content of each outside topic with subscribers. A publish
-- ping sets fetch_due; a worker claims the row, fetches, and bumps version when the
-- content changed. Subscribers of outside topics count versions in delivered_seq.
CREATE TABLE websub_topics (
    id             INTEGER PRIMARY KEY,
    url            TEXT    NOT NULL UNIQUE,
    content_type   TEXT    NOT NULL DEFAULT '',
    body           BLOB,
    hash           TEXT    NOT NULL DEFAULT '',
    version        INTEGER NOT NULL DEFAULT 0,
    fetch_due      INTEGER NOT NULL DEFAULT 0,
    claimed_until  INTEGER NOT NULL DEFAULT 0,
    fetched_at     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX websub_topics_due ON websub_topics (fetch_due);

-- Outside feeds the hub follows into a collection: by WebSub when the feed names a hub,
-- by polling with conditional GET otherwise. The callback URL holds callback_token (S5).
CREATE TABLE follows (
    id               INTEGER PRIMARY KEY,
    user_id          INTEGER NOT NULL REFERENCES users(id),
    collection_id    INTEGER NOT NULL REFERENCES collections(id),
    url              TEXT    NOT NULL,
    topic            TEXT    NOT NULL DEFAULT '',
    hub              TEXT    NOT NULL DEFAULT '',
    callback_token   TEXT    NOT NULL UNIQUE,
    secret           TEXT    NOT NULL,
    -- polling | subscribing | subscribed
    state            TEXT    NOT NULL,
    lease_expires_at INTEGER NOT NULL DEFAULT 0,
    next_at          INTEGER NOT NULL DEFAULT 0,
    claimed_until    INTEGER NOT NULL DEFAULT 0,
    etag             TEXT,
    last_modified    TEXT,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    UNIQUE (user_id, url)
);
CREATE INDEX follows_due ON follows (next_at);

-- Self keys: the key a credentialed feed fetch advertises as rel="self" is derived from a
-- server secret and this generation (revoking it makes the next fetch derive a new one).
ALTER TABLE feed_keys ADD COLUMN self_generation INTEGER;
CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- Claims of due deliveries look up subscribers behind their user's head by this index.
CREATE INDEX websub_subscriptions_due ON websub_subscriptions (user_id, delivered_seq);

-- Which user uploaded which blob: blobs are shared on disk (content-addressed), but a user
-- reads or references only blobs they uploaded themselves.
CREATE TABLE user_blobs (
    user_id     INTEGER NOT NULL REFERENCES users(id),
    sha256      TEXT    NOT NULL REFERENCES blobs(sha256),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, sha256)
);
