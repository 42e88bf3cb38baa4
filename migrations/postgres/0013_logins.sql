-- How people log in (same shape on sqlite/ and postgres/): an account password (argon2id,
-- as a PHC string), browser sessions, and app passwords for reader apps. Sessions and app
-- passwords are random secrets, kept only as SHA-256 hashes.
CREATE TABLE passwords (
    user_id     BIGINT  NOT NULL PRIMARY KEY REFERENCES users(id),
    phc         TEXT    NOT NULL,
    changed_at  BIGINT  NOT NULL
);

CREATE TABLE sessions (
    user_id     BIGINT  NOT NULL REFERENCES users(id),
    token_hash  TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    PRIMARY KEY (user_id, token_hash)
);

CREATE TABLE app_passwords (
    id          BIGSERIAL,
    user_id     BIGINT  NOT NULL REFERENCES users(id),
    name        TEXT    NOT NULL,
    hash        TEXT    NOT NULL UNIQUE,
    -- SHA-256 of the Fever API key, md5("user:password"), which can only be made while the
    -- password is known: when it is issued.
    fever_hash  TEXT    NOT NULL UNIQUE,
    prefix      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    last_used   BIGINT,
    revoked_at  BIGINT,
    PRIMARY KEY (user_id, id),
    UNIQUE (id)
);
