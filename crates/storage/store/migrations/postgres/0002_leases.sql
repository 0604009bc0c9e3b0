-- Background work is leased, so that of several replicas one does each piece, and another
-- takes it over when the lease runs out (its replica died).
ALTER TABLE outbox ADD COLUMN leased_until BIGINT;
ALTER TABLE outbox ADD COLUMN leased_by TEXT;
ALTER TABLE notification_cursors ADD COLUMN leased_by TEXT;
ALTER TABLE notification_cursors ADD COLUMN leased_until BIGINT;
