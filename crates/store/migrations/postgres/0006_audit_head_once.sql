-- The chain's head advanced in two writes per event: the append's UPDATE took the next
-- sequence number and this trigger then stored the hash. On PostgreSQL each write is a new
-- version of the one head row every append in the organization reads, and under load the
-- appends walked ever longer chains of dead versions (bench/ scenario 2, perf). The append now
-- reads the head with SELECT … FOR UPDATE, which writes no version, and the event's insert
-- advances sequence number and hash together, once. Only the event that follows the head moves
-- it, so an event inserted out of order leaves the head where it was for verification to see.
CREATE OR REPLACE FUNCTION rampart_audit_advance_head() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_heads SET seq = NEW.seq, hash = NEW.hash
        WHERE org_id = NEW.org_id AND seq = NEW.seq - 1;
    RETURN NULL;
END;
$$;
