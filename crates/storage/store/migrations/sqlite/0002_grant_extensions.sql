-- How many times a grant has been extended.
ALTER TABLE grants ADD COLUMN extensions INTEGER NOT NULL DEFAULT 0;
