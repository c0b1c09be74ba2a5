-- The spine: organizations, workspaces, users, memberships (platform tables) and the first
-- tenant tables (api_keys, contacts, contact_tags).
--
-- SQLite has no row-level security. The gap is covered by rule 2 of ARCHITECTURE §3: tenant
-- tables are reachable only through rampart-store's TenantTx, whose every query carries the
-- workspace id bound from an authorization decision. Composite foreign keys (rule 1) are
-- enforced here exactly as on PostgreSQL (PRAGMA foreign_keys=ON is set on every connection).

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    plan        TEXT NOT NULL CHECK (plan IN ('free', 'starter', 'growth', 'pro', 'enterprise')),
    created_at  TEXT NOT NULL
);

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations (id),
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (org_id, id)
);

CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    email        TEXT NOT NULL,
    email_lower  TEXT NOT NULL UNIQUE,
    name         TEXT,
    created_at   TEXT NOT NULL
);

CREATE TABLE memberships (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    user_id       TEXT NOT NULL REFERENCES users (id),
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'approver', 'billing', 'sales', 'viewer')),
    created_at    TEXT NOT NULL,
    UNIQUE (workspace_id, id),
    UNIQUE (workspace_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id),
    name            TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'approver', 'billing', 'sales', 'viewer')),
    key_hash        TEXT NOT NULL UNIQUE,
    display_prefix  TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    last_used_at    TEXT,
    revoked_at      TEXT,
    UNIQUE (workspace_id, id)
);

CREATE TABLE contacts (
    id             TEXT PRIMARY KEY,
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id),
    name           TEXT,
    email          TEXT,
    email_lower    TEXT,
    phone          TEXT,
    us_state       TEXT,
    custom_fields  TEXT NOT NULL DEFAULT '{}',
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    UNIQUE (workspace_id, id),
    UNIQUE (workspace_id, email_lower)
);
CREATE INDEX contacts_by_updated ON contacts (workspace_id, updated_at);

CREATE TABLE contact_tags (
    workspace_id  TEXT NOT NULL,
    contact_id    TEXT NOT NULL,
    tag           TEXT NOT NULL,
    PRIMARY KEY (workspace_id, contact_id, tag),
    FOREIGN KEY (workspace_id, contact_id) REFERENCES contacts (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX contact_tags_by_tag ON contact_tags (workspace_id, tag, contact_id);
