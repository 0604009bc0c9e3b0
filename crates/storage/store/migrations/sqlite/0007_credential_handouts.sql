-- Credentials a provider makes for a grant's holder are handed out once: the first caller
-- claims them here, every later or concurrent one finds the claim.
CREATE TABLE credential_handouts (
    grant_id TEXT NOT NULL REFERENCES grants (id),
    provider TEXT NOT NULL,
    claimed_at INTEGER NOT NULL,
    PRIMARY KEY (grant_id, provider)
);
