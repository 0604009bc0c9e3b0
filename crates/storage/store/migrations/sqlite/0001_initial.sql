-- Requests: indexed columns for queries, the whole request (without its grant) as JSON.
CREATE TABLE requests (
    id                 TEXT PRIMARY KEY NOT NULL,
    requester          TEXT NOT NULL,
    resource           TEXT NOT NULL,
    action             TEXT NOT NULL,
    status             TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    pending_expires_at INTEGER NOT NULL,
    version            INTEGER NOT NULL,
    doc                TEXT NOT NULL
);
CREATE INDEX requests_by_status ON requests (status, pending_expires_at);
CREATE INDEX requests_by_requester ON requests (requester, created_at);
CREATE INDEX requests_by_created ON requests (created_at, id);

-- Grants: every field a column, because checks, expiry and revocation query them.
CREATE TABLE grants (
    id             TEXT PRIMARY KEY NOT NULL,
    request_id     TEXT NOT NULL UNIQUE REFERENCES requests (id),
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
    end_comment    TEXT
);
CREATE INDEX grants_by_status_expiry ON grants (status, expires_at);
CREATE INDEX grants_by_principal ON grants (principal, status);

-- The audit log: append-only, each event chained to the one before by its hash.
CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY NOT NULL,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    subject    TEXT NOT NULL,
    request_id TEXT,
    grant_id   TEXT,
    resource   TEXT NOT NULL,
    action     TEXT NOT NULL,
    comment    TEXT,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_by_request ON audit_events (request_id);
CREATE INDEX audit_by_subject ON audit_events (subject, seq);
CREATE INDEX audit_by_actor ON audit_events (actor, seq);
CREATE INDEX audit_by_time ON audit_events (at);
