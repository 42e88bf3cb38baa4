-- What reader apps keep (same shape on sqlite/ and postgres/), per user, the user first in
-- every key: the stable integer id each feed has in the Google Reader, Miniflux and Fever
-- APIs, and which activities (by their sequence number) the user has read or starred.

-- A feed's id is given the first time the APIs list it and never reused for another.
CREATE TABLE reader_feeds (
    user_id  INTEGER NOT NULL REFERENCES users(id),
    feed_id  INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    key      TEXT    NOT NULL,
    PRIMARY KEY (user_id, feed_id),
    UNIQUE (user_id, kind, key)
);

-- Everything at or below `read_upto` is read unless a mark says it was kept unread.
CREATE TABLE reader_state (
    user_id    INTEGER NOT NULL PRIMARY KEY REFERENCES users(id),
    read_upto  INTEGER NOT NULL
);

-- One activity's marks: `read` NULL means "as the watermark says".
CREATE TABLE reader_marks (
    user_id  INTEGER NOT NULL REFERENCES users(id),
    seq      INTEGER NOT NULL,
    read     INTEGER,
    starred  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, seq)
);
CREATE INDEX reader_marks_starred ON reader_marks (user_id, seq) WHERE starred = 1;
CREATE INDEX reader_marks_unread ON reader_marks (user_id, seq) WHERE read = 0;
