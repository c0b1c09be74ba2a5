-- Only the database writes the chain. Until now the seal (migration 7) ran as the committing
-- role, so the application role held INSERT and UPDATE on audit_events and audit_heads, and a
-- connection with its password could store an event the seal never computed. At the head's
-- next sequence number such an event became the head (migration 6's trigger), its link wrong
-- for all anyone knew until `rampart audit verify` ran; further ahead, it waited for the chain
-- to reach its number and then made that seal, and every later seal of the organization, fail
-- on the primary key, with no way to remove it (the ledger is append-only). It could also move
-- a head by hand. What this does not change: the seal links whatever the application records
-- in audit_pending, as it must, since recording events is the application's job.
--
-- Now the seal runs as the role that owns the schema (SECURITY DEFINER), still under row-level
-- security, which FORCE applies to the owner as well, and `rampart migrate` takes INSERT and
-- UPDATE on audit_events and every write on audit_heads from the application role (crate
-- migrate.rs, after its grants, which run at every migrate). What the application may still
-- do to the ledger:
--   audit_pending      SELECT, INSERT: record an event, which the seal numbers and links
--   audit_events       SELECT, DELETE: retention, which the append-only trigger allows only
--                      at or behind a checkpoint
--   audit_checkpoints  SELECT, INSERT: a checkpoint must name an existing event
--   audit_heads        SELECT; a new organization's genesis head through
--                      rampart_audit_open_chain below
-- This needs the two roles the README's PostgreSQL section sets up; an application that
-- migrates its own schema owns it, and an owner can grant itself anything.
--
-- search_path is pinned because a definer's function must not resolve a name through a
-- schema its caller controls: every role may create temporary tables, and pg_temp is searched
-- first for tables unless it is named, here last.
ALTER FUNCTION rampart_audit_seal() SECURITY DEFINER SET search_path = public, pg_temp;

-- The genesis head of the organization the transaction is bound to: sequence 0, the zero
-- hash. It cannot put a head anywhere else, and does nothing when the head exists.
CREATE FUNCTION rampart_audit_open_chain(org text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF org IS DISTINCT FROM rampart_current_org() THEN
        RAISE EXCEPTION 'a chain can be opened only for the organization the transaction is bound to'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO audit_heads (org_id, seq, hash) VALUES (org, 0, repeat('0', 64))
        ON CONFLICT (org_id) DO NOTHING;
END;
$$;
REVOKE EXECUTE ON FUNCTION rampart_audit_open_chain(text) FROM PUBLIC;
