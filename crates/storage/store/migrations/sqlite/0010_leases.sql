-- Background work is leased, so that of several workers one does each piece, and another
-- takes it over when the lease runs out (its worker died).
ALTER TABLE outbox ADD COLUMN leased_until INTEGER;
ALTER TABLE outbox ADD COLUMN leased_by TEXT;
ALTER TABLE notification_cursors ADD COLUMN leased_by TEXT;
ALTER TABLE notification_cursors ADD COLUMN leased_until INTEGER;
