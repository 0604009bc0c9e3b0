-- A grant's deliveries are found by its id: when its end moves (extension, revocation), when
-- its state is shown, and when a worker leases a delivery only after the grant's earlier ones
-- have been carried out (a deprovisioning must never overtake its provisioning).
CREATE INDEX outbox_by_grant ON outbox (grant_id, id);
