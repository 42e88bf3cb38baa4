-- OAuth 2.0 (same shape on sqlite/ and postgres/): each user's client registration per
-- provider (the secret sealed), the authorisations waiting for their callback (the PKCE
-- verifier sealed; `state` is USER_ID.RANDOM, stored hashed), and each connector's tokens.
CREATE TABLE oauth_clients (
    user_id              INTEGER NOT NULL REFERENCES users(id),
    provider             TEXT    NOT NULL,
    client_id            TEXT    NOT NULL,
    client_secret_sealed TEXT,
    authorize_url        TEXT    NOT NULL,
    token_url            TEXT    NOT NULL,
    revoke_url           TEXT,
    scope                TEXT    NOT NULL DEFAULT '',
    created_at           INTEGER NOT NULL,
    PRIMARY KEY (user_id, provider)
);

CREATE TABLE oauth_pending (
    user_id          INTEGER NOT NULL REFERENCES users(id),
    state_hash       TEXT    NOT NULL,
    connector_id     INTEGER NOT NULL,
    verifier_sealed  TEXT    NOT NULL,
    expires_at       INTEGER NOT NULL,
    PRIMARY KEY (user_id, state_hash)
);

-- The provider a connector is authorised at, and its tokens (sealed JSON).
ALTER TABLE connectors ADD COLUMN provider TEXT;
ALTER TABLE connectors ADD COLUMN tokens_sealed TEXT;
