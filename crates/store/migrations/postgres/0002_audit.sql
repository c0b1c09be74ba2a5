-- The audit ledger, idempotency keys and object version history.
--
-- Ledger tables are keyed by organization and guarded by row-level security on
-- rampart_current_org(), which raises when a transaction has not bound one. audit_events is
-- append-only: a trigger refuses UPDATE and TRUNCATE, and DELETE except for events at or
-- behind a recorded checkpoint (retention); checkpoints are append-only and must name an
-- existing event by (org, seq, hash).

CREATE FUNCTION rampart_current_org() RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    org text := current_setting('rampart.org_id', true);
BEGIN
    IF org IS NULL OR org = '' THEN
        RAISE EXCEPTION 'rampart.org_id is not set: ledger tables need an organization-bound transaction'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN org;
END
$$;

CREATE TABLE audit_heads (
    org_id  TEXT PRIMARY KEY REFERENCES organizations (id),
    seq     BIGINT NOT NULL,
    hash    TEXT NOT NULL
);
INSERT INTO audit_heads (org_id, seq, hash)
    SELECT id, 0, '0000000000000000000000000000000000000000000000000000000000000000' FROM organizations;

CREATE TABLE audit_events (
    org_id           TEXT NOT NULL REFERENCES organizations (id),
    seq              BIGINT NOT NULL,
    workspace_id     TEXT,
    at               TIMESTAMPTZ NOT NULL,
    actor            TEXT NOT NULL,
    auth_method      TEXT,
    method           TEXT NOT NULL,
    path             TEXT NOT NULL,
    action           TEXT NOT NULL,
    target           TEXT,
    args             TEXT NOT NULL,
    status           INTEGER NOT NULL,
    error_code       TEXT,
    duration_ms      BIGINT NOT NULL,
    idempotency_key  TEXT,
    request_id       TEXT NOT NULL,
    client_ip        TEXT,
    prev_hash        TEXT NOT NULL,
    hash             TEXT NOT NULL,
    PRIMARY KEY (org_id, seq)
);
CREATE INDEX audit_by_org_time ON audit_events (org_id, at);
CREATE INDEX audit_by_actor_time ON audit_events (actor, at);
CREATE INDEX audit_by_workspace_time ON audit_events (workspace_id, at);
CREATE INDEX audit_by_action_time ON audit_events (action, at);

CREATE TABLE audit_checkpoints (
    org_id      TEXT NOT NULL REFERENCES organizations (id),
    seq         BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, seq)
);

CREATE FUNCTION rampart_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events' AND EXISTS (
        SELECT 1 FROM audit_checkpoints c WHERE c.org_id = OLD.org_id AND c.seq >= OLD.seq
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% are append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION rampart_audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION rampart_audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_audit_append_only();

CREATE FUNCTION rampart_checkpoint_names_an_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.org_id = NEW.org_id AND e.seq = NEW.seq AND e.hash = NEW.hash) THEN
        RAISE EXCEPTION 'a checkpoint must name an existing event by sequence and hash';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_checkpoints_name_a_real_event BEFORE INSERT ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION rampart_checkpoint_names_an_event();

CREATE TABLE idempotency_keys (
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id),
    actor             TEXT NOT NULL,
    key               TEXT NOT NULL,
    request_hash      TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    status            INTEGER,
    response_headers  TEXT,
    response_body     TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ NOT NULL,
    locked_until      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace_id, actor, key)
);
CREATE INDEX idempotency_by_expiry ON idempotency_keys (workspace_id, expires_at);

CREATE TABLE object_versions (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    object_type   TEXT NOT NULL,
    object_id     TEXT NOT NULL,
    version       BIGINT NOT NULL,
    event         TEXT NOT NULL CHECK (event IN ('create', 'update', 'delete')),
    actor         TEXT NOT NULL,
    at            TIMESTAMPTZ NOT NULL,
    before        TEXT,
    after         TEXT,
    PRIMARY KEY (workspace_id, object_type, object_id, version)
);

ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON audit_heads
    USING (org_id = rampart_current_org()) WITH CHECK (org_id = rampart_current_org());

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON audit_events
    USING (org_id = rampart_current_org()) WITH CHECK (org_id = rampart_current_org());

ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON audit_checkpoints
    USING (org_id = rampart_current_org()) WITH CHECK (org_id = rampart_current_org());

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys
    USING (workspace_id = rampart_current_workspace()) WITH CHECK (workspace_id = rampart_current_workspace());

ALTER TABLE object_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE object_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON object_versions
    USING (workspace_id = rampart_current_workspace()) WITH CHECK (workspace_id = rampart_current_workspace());
