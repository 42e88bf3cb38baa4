-- Routes (same shape on sqlite/ and postgres/): a user's collection routed into a
-- connector's outbox, with an optional filter (the search's, as JSON) and how far the route
-- has read its collection. What each route copied is kept, copy to source, so a loop
-- (A -> B -> A) is seen by walking an item's provenance back; `pulled_id` is the id a
-- connector's pull gives what it posted, so its echo is known when it comes back (through
-- any connector that sees it).
CREATE TABLE routes (
    id                 BIGSERIAL,
    user_id            BIGINT  NOT NULL REFERENCES users(id),
    from_collection_id BIGINT  NOT NULL REFERENCES collections(id),
    connector_id       BIGINT  NOT NULL,
    filter             TEXT    NOT NULL,
    seq                BIGINT  NOT NULL DEFAULT 0,
    created_at         BIGINT  NOT NULL,
    PRIMARY KEY (user_id, id),
    UNIQUE (user_id, from_collection_id, connector_id)
);
CREATE TABLE route_copies (
    user_id        BIGINT  NOT NULL REFERENCES users(id),
    route_id       BIGINT  NOT NULL,
    source_sync_id TEXT    NOT NULL,
    copy_sync_id   TEXT    NOT NULL,
    PRIMARY KEY (user_id, route_id, source_sync_id)
);
CREATE INDEX route_copies_copy ON route_copies (user_id, copy_sync_id);
ALTER TABLE connector_posts ADD COLUMN pulled_id TEXT;
CREATE INDEX connector_posts_pulled ON connector_posts (user_id, pulled_id);
