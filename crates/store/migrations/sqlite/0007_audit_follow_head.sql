-- SQLite stores an event only as the successor of its organization's chain head: the next
-- sequence number, linked to the head's hash. The append links events in Rust, and may link one
-- to the head it expects (the writer's hint of the head it last moved, see
-- rampart_store::audit) rather than to the head it has just read; this trigger is what makes that
-- safe: an event linked to anything but the actual head is refused whole, nothing of it stored,
-- and the append reads the head and links again. It also closes the gap migration 6 left open:
-- an event inserted out of order, by any writer, is now refused instead of stored beside a head
-- that did not move. (PostgreSQL seals every event inside COMMIT from the head it locks, so no
-- event there can name another predecessor: its migration 7.)
CREATE TRIGGER audit_events_follow_head BEFORE INSERT ON audit_events
WHEN NOT EXISTS (
    SELECT 1 FROM audit_heads h
    WHERE h.org_id = NEW.org_id AND h.seq = NEW.seq - 1 AND h.hash = NEW.prev_hash
)
BEGIN
    SELECT RAISE(ABORT, 'audit event does not follow its chain head');
END;
