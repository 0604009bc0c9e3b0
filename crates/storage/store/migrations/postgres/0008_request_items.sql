-- A request may ask for several things at once (issue #21): one grant per item, so a request
-- may have several grants, told apart by `item` (0: the request's own resource and action).
ALTER TABLE grants DROP CONSTRAINT grants_request_id_key;
ALTER TABLE grants ADD COLUMN item BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX grants_by_request ON grants (request_id, item);
