-- The hash of the event at after_seq, as the audit sink shipped it: a sink that later finds
-- another event at that seq (a failover to a standby that lacked it, a forked log) refuses it.
-- NULL for notification sinks and for cursors moved without a hash.
ALTER TABLE notification_cursors ADD COLUMN after_hash TEXT;
