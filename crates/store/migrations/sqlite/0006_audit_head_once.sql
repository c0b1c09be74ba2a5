-- The chain's head advanced in two writes per event: the append's UPDATE took the next
-- sequence number and this trigger then stored the hash. The append now only reads the head
-- (the write transaction already holds SQLite's one writer) and the event's insert advances
-- sequence number and hash together, once. Only the event that follows the head moves it, so
-- an event inserted out of order leaves the head where it was for verification to see.
DROP TRIGGER audit_events_advance_head;
CREATE TRIGGER audit_events_advance_head AFTER INSERT ON audit_events
BEGIN
    UPDATE audit_heads SET seq = NEW.seq, hash = NEW.hash
        WHERE org_id = NEW.org_id AND seq = NEW.seq - 1;
END;
