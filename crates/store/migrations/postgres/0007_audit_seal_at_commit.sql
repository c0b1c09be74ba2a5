-- The chain is sealed inside COMMIT. An append used to read the organization's head with
-- SELECT … FOR UPDATE, insert the event it had linked to it, and keep the head locked until its
-- COMMIT had been flushed: three client round trips with the lock held, during which every other
-- write of the organization waited (bench/ scenario 2: about 700 writes/s in one organization on
-- two cores, whatever else was free). Now an append records its event unsealed in audit_pending,
-- and a deferred constraint trigger seals it while the transaction commits: it locks the head,
-- numbers the event, computes its link by docs/audit-chain.md and inserts it into audit_events,
-- then drops the pending row. The head is held for the commit alone, on the server, with no
-- client in the loop; the event still commits with the change it records or not at all, and a
-- committed audit_events row is always sealed, as before.
--
-- SQLite has no such table: its one writer serializes every write anyway, and there the append
-- links the event in Rust (rampart_core::audit) as it always has. The Rust encoder and this one
-- are checked against each other by every PostgreSQL test that verifies a chain, and at the
-- edges of the encoding by `edge_values_link_alike_in_the_database_and_in_rust`
-- (crates/server/tests/audit.rs); the Rust encoder has the specification's known answer.

-- One field of the canonical encoding: a 4-byte big-endian length and the UTF-8 bytes, or
-- FF FF FF FF for an absent field.
CREATE FUNCTION rampart_audit_field(v text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL THEN '\xffffffff'::bytea
                ELSE int4send(octet_length(convert_to(v, 'UTF8'))) || convert_to(v, 'UTF8') END
$$;

-- Events recorded by transactions that have not committed yet. A row lives only inside its own
-- transaction (the seal deletes it before COMMIT returns), so the table is unlogged: nothing in
-- it ever needs to survive a crash. The time range keeps `at` within the four-digit years the
-- canonical form spells the same way here and in Rust.
CREATE UNLOGGED TABLE audit_pending (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id           TEXT NOT NULL,
    workspace_id     TEXT,
    at               TIMESTAMPTZ NOT NULL
                     CHECK (at >= '0001-01-01 00:00:00+00' AND at < '10000-01-01 00:00:00+00'),
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
    client_ip        TEXT
);
ALTER TABLE audit_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_pending FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON audit_pending
    USING (org_id = rampart_current_org()) WITH CHECK (org_id = rampart_current_org());

-- Runs as the committing role, under the same row-level security as the append's own
-- statements did (the organization bound with SET LOCAL is still bound while COMMIT runs
-- deferred triggers). Deferred triggers fire in the order their rows were inserted, so the
-- events of one transaction keep their order in the chain.
CREATE FUNCTION rampart_audit_seal() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head_seq   bigint;
    head_hash  text;
    next_seq   bigint;
    link       text;
BEGIN
    SELECT seq, hash INTO head_seq, head_hash FROM audit_heads WHERE org_id = NEW.org_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit_heads (org_id, seq, hash) VALUES (NEW.org_id, 0, repeat('0', 64))
            ON CONFLICT (org_id) DO NOTHING;
        SELECT seq, hash INTO head_seq, head_hash FROM audit_heads WHERE org_id = NEW.org_id FOR UPDATE;
    END IF;
    next_seq := head_seq + 1;
    link := encode(sha256(
        decode(head_hash, 'hex')
        || rampart_audit_field('rampart.audit.v1')
        || rampart_audit_field(NEW.org_id)
        || rampart_audit_field(next_seq::text)
        || rampart_audit_field(NEW.workspace_id)
        || rampart_audit_field(to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || rampart_audit_field(NEW.actor)
        || rampart_audit_field(NEW.auth_method)
        || rampart_audit_field(NEW.method)
        || rampart_audit_field(NEW.path)
        || rampart_audit_field(NEW.action)
        || rampart_audit_field(NEW.target)
        || rampart_audit_field(NEW.args)
        || rampart_audit_field(NEW.status::text)
        || rampart_audit_field(NEW.error_code)
        || rampart_audit_field(NEW.duration_ms::text)
        || rampart_audit_field(NEW.idempotency_key)
        || rampart_audit_field(NEW.request_id)
        || rampart_audit_field(NEW.client_ip)
    ), 'hex');
    INSERT INTO audit_events (org_id, seq, workspace_id, at, actor, auth_method, method, path,
            action, target, args, status, error_code, duration_ms, idempotency_key, request_id,
            client_ip, prev_hash, hash)
        VALUES (NEW.org_id, next_seq, NEW.workspace_id, NEW.at, NEW.actor, NEW.auth_method,
            NEW.method, NEW.path, NEW.action, NEW.target, NEW.args, NEW.status, NEW.error_code,
            NEW.duration_ms, NEW.idempotency_key, NEW.request_id, NEW.client_ip, head_hash, link);
    DELETE FROM audit_pending WHERE id = NEW.id;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER audit_pending_seal AFTER INSERT ON audit_pending
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION rampart_audit_seal();
