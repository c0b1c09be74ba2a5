-- Keys: the keyring (wrapped data keys), provider credentials and the organization tombstone.
--
-- key_ring holds each scope's data keys (an organization id, or 'platform'), only wrapped by
-- a master key named by kek_id. It is a platform table without row-level security: the
-- server reads it to open any tenant's values. Exclude it from data backups (pg_dump
-- --exclude-table-data=key_ring) and back it up separately: a data dump without it carries
-- no key that opens its ciphertext, and deleting an organization's rows here erases that
-- organization's encrypted fields everywhere, backups included.
-- key_ring_destroyed records erased scopes, so no key is ever made for them again.

CREATE TABLE key_ring (
    scope       TEXT NOT NULL,
    version     BIGINT NOT NULL CHECK (version > 0),
    kek_id      TEXT NOT NULL,
    wrapped     BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, version)
);

CREATE TABLE key_ring_destroyed (
    scope         TEXT PRIMARY KEY,
    destroyed_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE credentials (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    provider      TEXT NOT NULL,
    secret        BYTEA NOT NULL,
    last4         TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (workspace_id, id),
    UNIQUE (workspace_id, provider)
);

ALTER TABLE credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE credentials FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON credentials
    USING (workspace_id = rampart_current_workspace())
    WITH CHECK (workspace_id = rampart_current_workspace());

ALTER TABLE organizations ADD COLUMN deleted_at TIMESTAMPTZ;
