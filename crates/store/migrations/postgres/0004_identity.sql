-- Identity: password credentials, lockout, two-factor state, sessions, single-use emailed tokens,
-- backup codes and invitations. All are platform tables (a user is not inside one workspace);
-- none holds customer data. Secrets are stored only as hashes, except the TOTP secret, which
-- must be recoverable and is stored encrypted under the platform data key.

ALTER TABLE users ADD COLUMN password_hash TEXT;
ALTER TABLE users ADD COLUMN email_confirmed_at TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN failed_signins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN totp_secret BYTEA;
ALTER TABLE users ADD COLUMN totp_pending_secret BYTEA;
ALTER TABLE users ADD COLUMN totp_enabled_at TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;

CREATE TABLE sessions (
    id                   TEXT PRIMARY KEY,
    user_id              TEXT NOT NULL REFERENCES users (id),
    token_hash           TEXT NOT NULL UNIQUE,
    csrf_hash            TEXT NOT NULL,
    stage                TEXT NOT NULL CHECK (stage IN ('active', 'second_factor')),
    second_factor_failures BIGINT NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ NOT NULL,
    last_seen_at         TIMESTAMPTZ NOT NULL,
    idle_expires_at      TIMESTAMPTZ NOT NULL,
    absolute_expires_at  TIMESTAMPTZ NOT NULL,
    ended_at             TIMESTAMPTZ,
    end_reason           TEXT,
    client_ip            TEXT,
    user_agent           TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id, ended_at);

CREATE TABLE auth_tokens (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    purpose     TEXT NOT NULL CHECK (purpose IN ('confirm', 'reset', 'magic_link')),
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX auth_tokens_by_user ON auth_tokens (user_id, purpose);

CREATE TABLE backup_codes (
    user_id     TEXT NOT NULL REFERENCES users (id),
    code_hash   TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE invitations (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    email         TEXT NOT NULL,
    email_lower   TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'approver', 'billing', 'sales', 'viewer')),
    token_hash    TEXT NOT NULL UNIQUE,
    invited_by    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    accepted_at   TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ,
    UNIQUE (workspace_id, id)
);
CREATE INDEX invitations_by_workspace ON invitations (workspace_id, created_at);

-- Invitations belong to a workspace: row-level security like every tenant table. Accepting one
-- binds the workspace named inside the invitation token (as API keys carry theirs).
ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invitations
    USING (workspace_id = rampart_current_workspace())
    WITH CHECK (workspace_id = rampart_current_workspace());
