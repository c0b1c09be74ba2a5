-- Every append paid for three indexes no query reads: the workspace listing, export and
-- verification all walk an organization's chain by (org_id, seq), and retention finds its
-- cut-off by (org_id, at). Measured by bench/ scenario 2 (one audited write per request).
DROP INDEX IF EXISTS audit_by_actor_time;
DROP INDEX IF EXISTS audit_by_workspace_time;
DROP INDEX IF EXISTS audit_by_action_time;

-- The chain's head takes the new event's hash in the same statement that inserts the event,
-- instead of in an UPDATE of its own: one statement fewer inside every audited write. Only the
-- event the head was just advanced to moves it.
CREATE TRIGGER audit_events_advance_head AFTER INSERT ON audit_events
BEGIN
    UPDATE audit_heads SET hash = NEW.hash WHERE org_id = NEW.org_id AND seq = NEW.seq;
END;
