-- Providers of each grant, and what they still must be told.
ALTER TABLE grants ADD COLUMN providers TEXT NOT NULL DEFAULT '[]';

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    grant_id TEXT NOT NULL REFERENCES grants (id),
    provider TEXT NOT NULL,
    operation TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    done_at INTEGER,
    UNIQUE (grant_id, provider, operation)
);
CREATE INDEX outbox_due ON outbox (due_at) WHERE done_at IS NULL;
