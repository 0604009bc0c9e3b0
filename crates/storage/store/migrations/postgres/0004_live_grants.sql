-- Loading the check index at start-up reads active grants in id order, a page at a time.
CREATE INDEX grants_live ON grants (status, id);
