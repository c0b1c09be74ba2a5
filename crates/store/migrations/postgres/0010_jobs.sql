-- The durable job queue (crates/jobs): work that runs outside a request (mail, retention,
-- later campaigns and webhooks), claimed by workers on any node with a lease that expires, so
-- a job whose worker died runs again (at least once, never lost). Workers claim with
-- `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)`: two nodes never take the same row
-- and neither waits for the other's claim.
--
-- A platform table, like organizations and users: workers claim across every organization,
-- before any workspace is bound, so it has no row-level security. It holds no customer data:
-- a payload carries ids only (which user, which organization, which kind of mail), never an
-- address, a token or a secret, and the handler reads what it needs through the ordinary doors
-- (a tenant transaction, an organization's ledger) when it runs. `org_id` / `workspace_id`
-- name the tenant a job acts for (an operator's re-queue is recorded in that organization's
-- ledger); `user_id` the person a job concerns; all three empty is a platform job.
--
-- States: queued (waits for run_at), running (leased until lease_until by lease_token), done,
-- dead (out of attempts, or refused for good; last_error says why, written for an operator).
-- A dedup_key names one run: a scheduled job's slot, so that two nodes enqueue it once.

CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL CHECK (length(payload) <= 4096),
    org_id        TEXT REFERENCES organizations (id),
    workspace_id  TEXT,
    user_id       TEXT REFERENCES users (id),
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at        TIMESTAMPTZ NOT NULL,
    lease_token   TEXT,
    lease_until   TIMESTAMPTZ,
    dedup_key     TEXT UNIQUE,
    last_error    TEXT CHECK (length(last_error) <= 1024),
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ,
    CHECK ((state = 'running') = (lease_token IS NOT NULL AND lease_until IS NOT NULL)),
    CHECK (workspace_id IS NULL OR org_id IS NOT NULL),
    FOREIGN KEY (org_id, workspace_id) REFERENCES workspaces (org_id, id)
);
-- What a worker claims: queued jobs that are due, and running jobs whose lease has expired.
CREATE INDEX jobs_due ON jobs (run_at) WHERE state = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_by_state ON jobs (state, id);
