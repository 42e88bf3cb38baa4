-- How people log in (same shape on sqlite/ and postgres/): an account password (argon2id,
-- as a PHC string), browser sessions, and app passwords for reader apps. Sessions and app
-- passwords are random secrets, kept only as SHA-256 hashes.
CREATE TABLE passwords (
    user_id     INTEGER NOT NULL PRIMARY KEY REFERENCES users(id),
    phc         TEXT    NOT NULL,
    changed_at  INTEGER NOT NULL
);

CREATE TABLE sessions (
    user_id     INTEGER NOT NULL REFERENCES users(id),
    token_hash  TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, token_hash)
);

CREATE TABLE app_passwords (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    name        TEXT    NOT NULL,
    hash        TEXT    NOT NULL UNIQUE,
    -- SHA-256 of the Fever API key, md5("user:password"), which can only be made while the
    -- password is known: when it is issued.
    fever_hash  TEXT    NOT NULL UNIQUE,
    prefix      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    last_used   INTEGER,
    revoked_at  INTEGER,
    UNIQUE (user_id, id)
);
