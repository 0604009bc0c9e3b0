-- The directory an identity provider provisions over SCIM (issue #25).

-- A provisioning token (`jitgate token create --scim`) may call /scim/v2 and nothing else.
ALTER TABLE api_tokens ADD COLUMN scim INTEGER NOT NULL DEFAULT 0;

-- Users. A deleted user stays as a tombstone (deleted_at set): its id is never reused and its
-- principal stays known as departed. The *_key columns hold the case-folded values that
-- uniqueness and the case-insensitive filters (RFC 7643 caseExact: false) compare; jitgate
-- folds them itself, so both stores fold alike. The document is JSON text, never JSONB:
-- what the client wrote is read back as written.
CREATE TABLE scim_users (
    id               TEXT PRIMARY KEY NOT NULL,
    user_name        TEXT NOT NULL,
    user_name_key    TEXT NOT NULL,
    principal        TEXT NOT NULL,
    principal_key    TEXT NOT NULL,
    external_id      TEXT,
    display_name     TEXT,
    display_name_key TEXT,
    active           INTEGER NOT NULL,
    manager_id       TEXT,
    doc              TEXT NOT NULL,
    version          INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    modified_at      INTEGER NOT NULL,
    deleted_at       INTEGER
);
-- Unique among live users only: a deleted user's userName and principal are free again.
CREATE UNIQUE INDEX scim_users_user_name ON scim_users (user_name_key) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX scim_users_principal ON scim_users (principal_key) WHERE deleted_at IS NULL;
CREATE INDEX scim_users_external_id ON scim_users (external_id) WHERE deleted_at IS NULL;
CREATE INDEX scim_users_display_name ON scim_users (display_name_key) WHERE deleted_at IS NULL;
-- Pages in creation order.
CREATE INDEX scim_users_live ON scim_users (created_at, id) WHERE deleted_at IS NULL;
-- The departed: tombstones by principal.
CREATE INDEX scim_users_departed ON scim_users (principal_key) WHERE deleted_at IS NOT NULL;

-- Groups: deleted for good (their members with them).
CREATE TABLE scim_groups (
    id               TEXT PRIMARY KEY NOT NULL,
    display_name     TEXT NOT NULL,
    display_name_key TEXT NOT NULL UNIQUE,
    external_id      TEXT,
    doc              TEXT NOT NULL,
    version          INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    modified_at      INTEGER NOT NULL
);
CREATE INDEX scim_groups_external_id ON scim_groups (external_id);
CREATE INDEX scim_groups_created ON scim_groups (created_at, id);

-- Memberships as rows, so that adding or removing one member of a 10,000-member group writes
-- one row, never the whole list.
CREATE TABLE scim_members (
    group_id TEXT NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES scim_users (id),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX scim_members_by_user ON scim_members (user_id);
