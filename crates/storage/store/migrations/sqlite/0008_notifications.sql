-- When the holder of a grant was reminded that it ends soon (cleared when it is extended).
ALTER TABLE grants ADD COLUMN reminded_at INTEGER;

-- How far each notification sink has read the audit log: it is told of every event after.
CREATE TABLE notification_cursors (
    sink TEXT PRIMARY KEY,
    after_seq INTEGER NOT NULL
);
