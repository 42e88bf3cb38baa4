-- Activities, contacts, companies, views and search (same shape on sqlite/ and postgres/).
-- Every table is keyed by its user first; no query joins rows of two users.

-- What each change is as an activity (Activity Streams 2.0 names).
ALTER TABLE changes ADD COLUMN verb TEXT NOT NULL DEFAULT 'Create';
ALTER TABLE changes ADD COLUMN object_type TEXT NOT NULL DEFAULT 'Note';

-- The identities an activity names (its actor, its recipients), written with its change.
-- A contact's timeline is the activities whose identities the contact holds: linking is by
-- identity, so an identity added to a contact links its earlier activities, and a merge or
-- its undo moves identities, never activities.
CREATE TABLE activity_people (
    user_id   INTEGER NOT NULL REFERENCES users(id),
    identity  TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    role      TEXT NOT NULL,
    name      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, identity, seq, role)
) WITHOUT ROWID;

-- The contacts index, derived from the items of each user's Contacts collection in the same
-- transaction as their writes (the vCard in the item is the truth).
CREATE TABLE contacts (
    user_id     INTEGER NOT NULL REFERENCES users(id),
    contact_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    org         TEXT NOT NULL DEFAULT '',
    tags        TEXT NOT NULL DEFAULT '',
    seq         INTEGER NOT NULL,
    PRIMARY KEY (user_id, contact_id)
);

CREATE TABLE contact_identities (
    user_id     INTEGER NOT NULL REFERENCES users(id),
    identity    TEXT NOT NULL,
    contact_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, identity, contact_id)
);
CREATE INDEX contact_identities_by_contact ON contact_identities (user_id, contact_id);

CREATE TABLE contact_tags (
    user_id     INTEGER NOT NULL REFERENCES users(id),
    tag         TEXT NOT NULL,
    contact_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, tag, contact_id)
);
CREATE INDEX contact_tags_by_contact ON contact_tags (user_id, contact_id);

-- Companies: from a contact's ORG and the (not free-mail) domains of its addresses.
CREATE TABLE contact_companies (
    user_id     INTEGER NOT NULL REFERENCES users(id),
    slug        TEXT NOT NULL,
    contact_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    PRIMARY KEY (user_id, slug, contact_id)
);
CREATE INDEX contact_companies_by_contact ON contact_companies (user_id, contact_id);

-- A merge of two contacts and what undoing it restores (both vCards as they were).
CREATE TABLE contact_merges (
    user_id      INTEGER NOT NULL REFERENCES users(id),
    merge_id     TEXT NOT NULL,
    into_id      TEXT NOT NULL,
    other_id     TEXT NOT NULL,
    into_before  TEXT NOT NULL,
    other_before TEXT NOT NULL,
    moved        TEXT NOT NULL,
    at           INTEGER NOT NULL,
    undone_at    INTEGER,
    PRIMARY KEY (user_id, merge_id)
);

-- Saved views: a named search, served as a feed.
CREATE TABLE views (
    user_id     INTEGER NOT NULL REFERENCES users(id),
    name        TEXT NOT NULL,
    query       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, name)
);

-- Full-text search: FTS5 over the words of each activity (lower-cased by the hub, so both
-- databases see the same words). Contentless (the text is in the change already); the rowid
-- names the activity: user_id * 2^40 + seq, so one user's matches are one rowid range.
CREATE VIRTUAL TABLE activity_text USING fts5(body, content = '', columnsize = 0, tokenize = 'unicode61 remove_diacritics 0');

-- Changes made before activities existed are indexed by a background worker, newest first:
-- each user's changes at or below `upto` are still to do (the row goes when none are).
CREATE TABLE activity_backfill (
    user_id  INTEGER PRIMARY KEY REFERENCES users(id),
    upto     INTEGER NOT NULL
);
INSERT INTO activity_backfill (user_id, upto) SELECT id, head_seq FROM users WHERE head_seq > 0;
