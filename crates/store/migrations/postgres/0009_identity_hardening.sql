-- Identity hardening (issue 32). The second factor is counted per person as well as per pending
-- session: failures since the last success, a lock that doubles with each one in a row, and when
-- its owner was last mailed about a lock (at most once an hour).

ALTER TABLE users ADD COLUMN second_factor_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN second_factor_locked_until TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN second_factor_locks BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN second_factor_lock_mailed_at TIMESTAMPTZ;
