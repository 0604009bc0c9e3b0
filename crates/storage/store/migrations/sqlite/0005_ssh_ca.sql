-- The SSH user certificate authority's key: one row.
CREATE TABLE ssh_ca (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    private_openssh TEXT NOT NULL,
    public_openssh TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
