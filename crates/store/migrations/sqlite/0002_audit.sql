-- The audit ledger, idempotency keys and object version history.
--
-- audit_events is append-only: triggers refuse UPDATE, and refuse DELETE except for events
-- at or behind a recorded checkpoint (retention). Checkpoints are append-only and must name an
-- existing event by (org, seq, hash). SQLite has no row-level security: the gap is covered by
-- rampart-store, whose ledger and tenant transactions name the organization in every query.

CREATE TABLE audit_heads (
    org_id  TEXT PRIMARY KEY REFERENCES organizations (id),
    seq     INTEGER NOT NULL,
    hash    TEXT NOT NULL
);
INSERT INTO audit_heads (org_id, seq, hash)
    SELECT id, 0, '0000000000000000000000000000000000000000000000000000000000000000' FROM organizations;

CREATE TABLE audit_events (
    org_id           TEXT NOT NULL REFERENCES organizations (id),
    seq              INTEGER NOT NULL,
    workspace_id     TEXT,
    at               TEXT NOT NULL,
    actor            TEXT NOT NULL,
    auth_method      TEXT,
    method           TEXT NOT NULL,
    path             TEXT NOT NULL,
    action           TEXT NOT NULL,
    target           TEXT,
    args             TEXT NOT NULL,
    status           INTEGER NOT NULL,
    error_code       TEXT,
    duration_ms      INTEGER NOT NULL,
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
    seq         INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (org_id, seq)
);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

CREATE TRIGGER audit_events_delete_behind_checkpoint_only BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM audit_checkpoints c WHERE c.org_id = OLD.org_id AND c.seq >= OLD.seq)
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only; only events behind a checkpoint may be removed');
END;

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;

CREATE TRIGGER audit_checkpoints_name_a_real_event BEFORE INSERT ON audit_checkpoints
WHEN NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.org_id = NEW.org_id AND e.seq = NEW.seq AND e.hash = NEW.hash)
BEGIN
    SELECT RAISE(ABORT, 'a checkpoint must name an existing event by sequence and hash');
END;

CREATE TABLE idempotency_keys (
    workspace_id      TEXT NOT NULL REFERENCES workspaces (id),
    actor             TEXT NOT NULL,
    key               TEXT NOT NULL,
    request_hash      TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    status            INTEGER,
    response_headers  TEXT,
    response_body     TEXT,
    created_at        TEXT NOT NULL,
    expires_at        TEXT NOT NULL,
    locked_until      TEXT NOT NULL,
    PRIMARY KEY (workspace_id, actor, key)
);
CREATE INDEX idempotency_by_expiry ON idempotency_keys (workspace_id, expires_at);

CREATE TABLE object_versions (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    object_type   TEXT NOT NULL,
    object_id     TEXT NOT NULL,
    version       INTEGER NOT NULL,
    event         TEXT NOT NULL CHECK (event IN ('create', 'update', 'delete')),
    actor         TEXT NOT NULL,
    at            TEXT NOT NULL,
    before        TEXT,
    after         TEXT,
    PRIMARY KEY (workspace_id, object_type, object_id, version)
);
