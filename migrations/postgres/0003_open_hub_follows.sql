-- Open hub and follows: outside topics belong to no user.
ALTER TABLE websub_subscriptions ALTER COLUMN user_id DROP NOT NULL;
ALTER TABLE websub_requests ALTER COLUMN user_id DROP NOT NULL;

-- Open hub: the last fetched content of each outside topic with subscribers. A publish
-- ping sets fetch_due; a worker claims the row, fetches, and bumps version when the
-- content changed. Subscribers of outside topics count versions in delivered_seq.
CREATE TABLE websub_topics (
    id             BIGSERIAL PRIMARY KEY,
    url            TEXT    NOT NULL UNIQUE,
    content_type   TEXT    NOT NULL DEFAULT '',
    body           BYTEA,
    hash           TEXT    NOT NULL DEFAULT '',
    version        BIGINT NOT NULL DEFAULT 0,
    fetch_due      BIGINT NOT NULL DEFAULT 0,
    claimed_until  BIGINT NOT NULL DEFAULT 0,
    fetched_at     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX websub_topics_due ON websub_topics (fetch_due);

-- Outside feeds the hub follows into a collection: by WebSub when the feed names a hub,
-- by polling with conditional GET otherwise. The callback URL holds callback_token (S5).
CREATE TABLE follows (
    id               BIGSERIAL PRIMARY KEY,
    user_id          BIGINT NOT NULL REFERENCES users(id),
    collection_id    BIGINT NOT NULL REFERENCES collections(id),
    url              TEXT    NOT NULL,
    topic            TEXT    NOT NULL DEFAULT '',
    hub              TEXT    NOT NULL DEFAULT '',
    callback_token   TEXT    NOT NULL UNIQUE,
    secret           TEXT    NOT NULL,
    -- polling | subscribing | subscribed
    state            TEXT    NOT NULL,
    lease_expires_at BIGINT NOT NULL DEFAULT 0,
    next_at          BIGINT NOT NULL DEFAULT 0,
    claimed_until    BIGINT NOT NULL DEFAULT 0,
    etag             TEXT,
    last_modified    TEXT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    UNIQUE (user_id, url)
);
CREATE INDEX follows_due ON follows (next_at);

-- Self keys: the key a credentialed feed fetch advertises as rel="self" is derived from a
-- server secret and this generation (revoking it makes the next fetch derive a new one).
ALTER TABLE feed_keys ADD COLUMN self_generation BIGINT;
CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- Claims of due deliveries look up subscribers behind their user's head by this index.
CREATE INDEX websub_subscriptions_due ON websub_subscriptions (user_id, delivered_seq);

-- Which user uploaded which blob: blobs are shared on disk (content-addressed), but a user
-- reads or references only blobs they uploaded themselves.
CREATE TABLE user_blobs (
    user_id     BIGINT NOT NULL REFERENCES users(id),
    sha256      TEXT    NOT NULL REFERENCES blobs(sha256),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, sha256)
);
