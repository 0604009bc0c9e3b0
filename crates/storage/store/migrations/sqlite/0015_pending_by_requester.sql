-- A requester's pending requests are counted at every filing that would wait for reviewers
-- (`[limits] max_pending_per_requester`): an index of pending requests alone keeps the count
-- as cheap for a CI identity with a million past requests as for anyone.
CREATE INDEX requests_pending_by_requester ON requests (requester, pending_expires_at) WHERE status = 'pending';
