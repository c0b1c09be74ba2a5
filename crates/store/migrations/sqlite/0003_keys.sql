-- Keys: provider credentials (a tenant table whose secret is stored only as field ciphertext)
-- and the organization tombstone left by `rampart admin delete-org`.
--
-- On SQLite the wrapped data keys do NOT live here: they are in the separate keyring file
-- (keyring.db beside this database, schema in crates/store/keyring/sqlite.sql), so a copy of
-- this file never carries the keys that open its ciphertext.

CREATE TABLE credentials (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    provider      TEXT NOT NULL,
    secret        BLOB NOT NULL,
    last4         TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (workspace_id, id),
    UNIQUE (workspace_id, provider)
);

ALTER TABLE organizations ADD COLUMN deleted_at TEXT;
