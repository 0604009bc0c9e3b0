-- jitgate on PostgreSQL: the same tables as on SQLite (see migrations/sqlite for their
-- history), times as milliseconds since the epoch in BIGINT, as the SQLite schema keeps them.

-- Requests: indexed columns for queries, the whole request (without its grant) as JSON.
CREATE TABLE requests (
    id                 TEXT PRIMARY KEY,
    requester          TEXT NOT NULL,
    resource           TEXT NOT NULL,
    action             TEXT NOT NULL,
    status             TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    pending_expires_at BIGINT NOT NULL,
    -- When a pending request escalates to backup reviewers (NULL when it will not, or did).
    escalate_at        BIGINT,
    version            BIGINT NOT NULL,
    doc                TEXT NOT NULL
);
CREATE INDEX requests_by_status ON requests (status, pending_expires_at);
CREATE INDEX requests_by_requester ON requests (requester, created_at);
CREATE INDEX requests_by_created ON requests (created_at, id);
CREATE INDEX requests_escalation ON requests (escalate_at) WHERE escalate_at IS NOT NULL;

-- Grants: every field a column, because checks, expiry and revocation query them.
CREATE TABLE grants (
    id             TEXT PRIMARY KEY,
    request_id     TEXT NOT NULL UNIQUE REFERENCES requests (id),
    principal      TEXT NOT NULL,
    resource       TEXT NOT NULL,
    action         TEXT NOT NULL,
    payload_sha256 TEXT,
    single_use     BOOLEAN NOT NULL,
    break_glass    BOOLEAN NOT NULL,
    status         TEXT NOT NULL,
    starts_at      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    ended_at       BIGINT,
    ended_by       TEXT,
    end_comment    TEXT,
    extensions     BIGINT NOT NULL DEFAULT 0,
    token          TEXT,
    providers      TEXT NOT NULL DEFAULT '[]',
    -- When the holder was reminded that it ends soon (cleared when it is extended).
    reminded_at    BIGINT
);
CREATE INDEX grants_by_status_expiry ON grants (status, expires_at);
CREATE INDEX grants_by_principal ON grants (principal, status);

-- The audit log: append-only, each event chained to the one before by its hash. Writers
-- append one at a time (an advisory lock), so the chain has no forks.
CREATE TABLE audit_events (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
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

-- API tokens an admin issues. Only the SHA-256 of a token is kept.
CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    principal  TEXT NOT NULL,
    groups     TEXT NOT NULL,
    service    BOOLEAN NOT NULL,
    label      TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    revoked_by TEXT
);

-- The keys that sign grant tokens.
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    algorithm       TEXT NOT NULL,
    private_der_hex TEXT NOT NULL,
    public_jwk      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    retired_at      BIGINT,
    publish_until   BIGINT
);

-- The SSH user certificate authority's key: one row.
CREATE TABLE ssh_ca (
    id              BIGINT PRIMARY KEY CHECK (id = 1),
    private_openssh TEXT NOT NULL,
    public_openssh  TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

-- What providers must still be told about grants.
CREATE TABLE outbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    grant_id   TEXT NOT NULL REFERENCES grants (id),
    provider   TEXT NOT NULL,
    operation  TEXT NOT NULL,
    due_at     BIGINT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    done_at    BIGINT,
    UNIQUE (grant_id, provider, operation)
);
CREATE INDEX outbox_due ON outbox (due_at) WHERE done_at IS NULL;

-- Credentials a provider makes for a grant's holder are handed out once.
CREATE TABLE credential_handouts (
    grant_id   TEXT NOT NULL REFERENCES grants (id),
    provider   TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    PRIMARY KEY (grant_id, provider)
);

-- How far each notification sink has read the audit log.
CREATE TABLE notification_cursors (
    sink      TEXT PRIMARY KEY,
    after_seq BIGINT NOT NULL
);
