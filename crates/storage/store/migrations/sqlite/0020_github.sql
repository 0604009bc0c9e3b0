-- jitgate as a GitHub App (issue #26, docs/github.md).

-- Every webhook delivery acted on (`X-GitHub-Delivery`), of any event: a redelivery of one
-- already here changes nothing.
CREATE TABLE github_deliveries (
    delivery_id TEXT PRIMARY KEY NOT NULL,
    event       TEXT NOT NULL,
    received_at INTEGER NOT NULL
);

-- Deployments waiting on a custom deployment protection rule, one per request jitgate files
-- for them. Tracked (with the request's id chosen) before the request is filed, so a crash in
-- between files the same request again. The pull requests are a JSON array of numbers.
CREATE TABLE github_deployments (
    request_id      TEXT PRIMARY KEY NOT NULL,
    delivery_id     TEXT NOT NULL UNIQUE,
    installation_id INTEGER NOT NULL,
    owner           TEXT NOT NULL,
    repo            TEXT NOT NULL,
    environment     TEXT NOT NULL,
    run_id          INTEGER NOT NULL,
    sha             TEXT NOT NULL,
    git_ref         TEXT NOT NULL,
    event           TEXT NOT NULL,
    actor           TEXT NOT NULL,
    pull_requests   TEXT NOT NULL,
    state           TEXT NOT NULL,
    answer          TEXT,
    comment         TEXT,
    received_at     INTEGER NOT NULL,
    answered_at     INTEGER
);
-- The sweep reads the waiting ones, oldest first.
CREATE INDEX github_deployments_waiting ON github_deployments (received_at, request_id) WHERE state = 'waiting';

-- Calls owed to GitHub's REST API (callbacks, comments): queued in the transaction that
-- decides them, leased to one worker at a time (as the outbox is), retried until done. The
-- key makes queuing idempotent; the body is JSON text.
CREATE TABLE github_calls (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    call_key        TEXT NOT NULL UNIQUE,
    installation_id INTEGER NOT NULL,
    method          TEXT NOT NULL,
    path            TEXT NOT NULL,
    body            TEXT NOT NULL,
    purpose         TEXT NOT NULL,
    request_id      TEXT,
    due_at          INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    done_at         INTEGER,
    leased_until    INTEGER,
    leased_by       TEXT
);
CREATE INDEX github_calls_due ON github_calls (due_at, id) WHERE done_at IS NULL;
CREATE INDEX github_calls_by_request ON github_calls (request_id, id) WHERE request_id IS NOT NULL;
