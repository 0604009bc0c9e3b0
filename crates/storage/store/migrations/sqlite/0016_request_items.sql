-- A request may ask for several things at once (issue #21): one grant per item, so a request
-- may have several grants, told apart by `item` (0: the request's own resource and action).
-- SQLite cannot drop the UNIQUE on `request_id` in place: the table is rebuilt. The outbox and
-- the credential handouts refer to grants by id; with the checks deferred, dropping the old
-- table counts their rows as orphans and putting the same ids back counts them as found, so
-- the commit sees every reference intact (and fails if one were not).
PRAGMA defer_foreign_keys = ON;

CREATE TABLE grants_before_items AS SELECT * FROM grants;
DROP TABLE grants;

CREATE TABLE grants (
    id             TEXT PRIMARY KEY NOT NULL,
    request_id     TEXT NOT NULL REFERENCES requests (id),
    principal      TEXT NOT NULL,
    resource       TEXT NOT NULL,
    action         TEXT NOT NULL,
    payload_sha256 TEXT,
    single_use     INTEGER NOT NULL,
    break_glass    INTEGER NOT NULL,
    status         TEXT NOT NULL,
    starts_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    ended_at       INTEGER,
    ended_by       TEXT,
    end_comment    TEXT,
    extensions     INTEGER NOT NULL DEFAULT 0,
    token          TEXT,
    providers      TEXT NOT NULL DEFAULT '[]',
    reminded_at    INTEGER,
    item           INTEGER NOT NULL DEFAULT 0,
    UNIQUE (request_id, item)
);
INSERT INTO grants (id, request_id, principal, resource, action, payload_sha256, single_use, break_glass, status,
                    starts_at, expires_at, ended_at, ended_by, end_comment, extensions, token, providers, reminded_at)
SELECT id, request_id, principal, resource, action, payload_sha256, single_use, break_glass, status,
       starts_at, expires_at, ended_at, ended_by, end_comment, extensions, token, providers, reminded_at
FROM grants_before_items;
DROP TABLE grants_before_items;

CREATE INDEX grants_by_status_expiry ON grants (status, expires_at);
CREATE INDEX grants_by_principal ON grants (principal, id);
CREATE INDEX grants_live ON grants (status, id);
