-- WebSub: verified subscriptions to hosted feeds, and pending verifications of intent.
-- Times are Unix milliseconds here (leases and retries need sub-second steps in tests).
CREATE TABLE websub_subscriptions (
    id             BIGSERIAL PRIMARY KEY,
    topic          TEXT    NOT NULL,
    callback       TEXT    NOT NULL,
    user_id        BIGINT NOT NULL REFERENCES users(id),
    feed           TEXT    NOT NULL,
    -- The feed key the topic URL carries: revoking it ends the subscription.
    key_hash       TEXT    NOT NULL,
    secret         TEXT,
    lease_seconds  BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    -- The user's change sequence number up to which this subscriber has been notified.
    delivered_seq  BIGINT NOT NULL,
    -- Delivery: failed attempts of the pending notification, when to try next, and a claim.
    attempts       BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    claimed_until  BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    UNIQUE (topic, callback)
);
CREATE INDEX websub_subscriptions_by_user ON websub_subscriptions (user_id);

-- A subscribe or unsubscribe waiting for its verification GET; claimed by a worker.
CREATE TABLE websub_requests (
    id             BIGSERIAL PRIMARY KEY,
    mode           TEXT    NOT NULL,
    topic          TEXT    NOT NULL,
    callback       TEXT    NOT NULL,
    user_id        BIGINT NOT NULL REFERENCES users(id),
    feed           TEXT    NOT NULL,
    -- The feed key the topic URL carries: revoking it ends the subscription.
    key_hash       TEXT    NOT NULL,
    secret         TEXT,
    lease_seconds  BIGINT NOT NULL,
    attempts       BIGINT NOT NULL DEFAULT 0,
    run_at         BIGINT NOT NULL,
    claimed_until  BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL
);
CREATE INDEX websub_requests_due ON websub_requests (run_at);
