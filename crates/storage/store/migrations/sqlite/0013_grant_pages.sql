-- Grant lists are paged newest first by id (UUIDv7, creation order); a principal's grants
-- come from this index in that order without a sort.
DROP INDEX grants_by_principal;
CREATE INDEX grants_by_principal ON grants (principal, id);
