-- The SQLite keyring (keyring.db, beside the data database): wrapped data keys, kept out of
-- the data file so that a copy of the data never carries the keys that open it.
-- Same tables as key_ring / key_ring_destroyed in the PostgreSQL migration 0003_keys.sql.

CREATE TABLE IF NOT EXISTS key_ring (
    scope       TEXT NOT NULL,
    version     INTEGER NOT NULL CHECK (version > 0),
    kek_id      TEXT NOT NULL,
    wrapped     BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (scope, version)
);

CREATE TABLE IF NOT EXISTS key_ring_destroyed (
    scope         TEXT PRIMARY KEY,
    destroyed_at  TEXT NOT NULL
);
