-- The spine: organizations, workspaces, users, memberships (platform tables) and the first
-- tenant tables (api_keys, contacts, contact_tags).
--
-- Platform tables are read to authenticate and authorize before a workspace is bound, so they
-- carry no row-level security; they hold no customer data. Every tenant table has
-- ENABLE + FORCE ROW LEVEL SECURITY and the policy `tenant_isolation`, which compares the
-- row's workspace with rampart_current_workspace(). That function raises when the
-- transaction has not bound a workspace, so a forgotten binding is an error, never a leak and
-- never a silently empty answer.

CREATE FUNCTION rampart_current_workspace() RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    ws text := current_setting('rampart.workspace_id', true);
BEGIN
    IF ws IS NULL OR ws = '' THEN
        RAISE EXCEPTION 'rampart.workspace_id is not set: tenant tables need a workspace-bound transaction'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN ws;
END
$$;

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    plan        TEXT NOT NULL CHECK (plan IN ('free', 'starter', 'growth', 'pro', 'enterprise')),
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations (id),
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (org_id, id)
);

CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    email        TEXT NOT NULL,
    email_lower  TEXT NOT NULL UNIQUE,
    name         TEXT,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE memberships (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    user_id       TEXT NOT NULL REFERENCES users (id),
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'approver', 'billing', 'sales', 'viewer')),
    created_at    TIMESTAMPTZ NOT NULL,
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
    created_at      TIMESTAMPTZ NOT NULL,
    last_used_at    TIMESTAMPTZ,
    revoked_at      TIMESTAMPTZ,
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
    custom_fields  JSONB NOT NULL DEFAULT '{}',
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
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

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (workspace_id = rampart_current_workspace())
    WITH CHECK (workspace_id = rampart_current_workspace());

ALTER TABLE contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE contacts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON contacts
    USING (workspace_id = rampart_current_workspace())
    WITH CHECK (workspace_id = rampart_current_workspace());

ALTER TABLE contact_tags ENABLE ROW LEVEL SECURITY;
ALTER TABLE contact_tags FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON contact_tags
    USING (workspace_id = rampart_current_workspace())
    WITH CHECK (workspace_id = rampart_current_workspace());
