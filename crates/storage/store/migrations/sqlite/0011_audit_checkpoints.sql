-- Signed statements of the audit log's head: cutting events off the end, or rewriting the
-- chain and recomputing its hashes, no longer matches them.
CREATE TABLE audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    at INTEGER NOT NULL,
    signature TEXT NOT NULL
);
