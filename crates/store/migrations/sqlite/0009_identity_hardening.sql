-- Identity hardening (issue 32). The second factor is counted per person as well as per pending
-- session: failures since the last success, a lock that doubles with each one in a row, and when
-- its owner was last mailed about a lock (at most once an hour).

ALTER TABLE users ADD COLUMN second_factor_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN second_factor_locked_until TEXT;
ALTER TABLE users ADD COLUMN second_factor_locks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN second_factor_lock_mailed_at TEXT;

-- Password failures are counted per account and source (a client IP, an IPv6 /64, stored only as
-- a hash): an attacker's failures from one place lock that place out, not the owner elsewhere.
-- Each lock in a row from a source doubles. The account-wide count (users.failed_signins) stays
-- as a backstop at a much higher threshold, with its own backoff; lock mails go out at most
-- once an hour.
CREATE TABLE signin_failures (
    user_id       TEXT NOT NULL REFERENCES users (id),
    source        TEXT NOT NULL,
    failures      INTEGER NOT NULL DEFAULT 0,
    locked_until  TEXT,
    locks         INTEGER NOT NULL DEFAULT 0,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (user_id, source)
);
ALTER TABLE users ADD COLUMN signin_locks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN lock_mailed_at TEXT;

-- Who minted each API key (`usr_…` or `key_…`; none for keys the operator minted): removing a
-- member revokes the keys they minted, and the keys those keys minted.
ALTER TABLE api_keys ADD COLUMN minted_by TEXT;

-- A workspace admin ending a member's sessions ends their sessions' access to that workspace
-- only (a person's sessions are theirs, and reach their other organizations too): sessions
-- created at or before this time no longer count as this membership.
ALTER TABLE memberships ADD COLUMN sessions_revoked_before TEXT;

-- A magic link asked for by a browser is bound to it: the SHA-256 of a nonce set as a cookie on
-- that request's answer; consuming the link needs the same cookie.
ALTER TABLE auth_tokens ADD COLUMN browser_hash TEXT;

-- An organization can require two-factor authentication of its members (ASVS V6.3.3): a member
-- without it reaches only what enrolling needs.
ALTER TABLE organizations ADD COLUMN require_2fa INTEGER NOT NULL DEFAULT 0;
