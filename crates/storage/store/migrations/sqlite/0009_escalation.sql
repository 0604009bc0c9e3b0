-- When a pending request escalates to backup reviewers (NULL when it will not, or did).
ALTER TABLE requests ADD COLUMN escalate_at INTEGER;
CREATE INDEX requests_escalation ON requests (escalate_at) WHERE escalate_at IS NOT NULL;
