-- The signed grant token of each grant, and the keys that sign them.
ALTER TABLE grants ADD COLUMN token TEXT;

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL,
    private_der_hex TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER,
    publish_until INTEGER
);
