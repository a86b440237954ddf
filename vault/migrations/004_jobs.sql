-- Work between processes goes through PostgreSQL (DESIGN §2): a job table claimed with
-- FOR UPDATE SKIP LOCKED, leases renewed by heartbeats, retries with backoff, a final state.

CREATE TABLE jobs (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}',
    dedupe_key   text UNIQUE,
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    run_after    timestamptz NOT NULL DEFAULT now(),
    lease_until  timestamptz,
    worker       text,
    last_error   text,
    result       jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_ready ON jobs (kind, run_after, id) WHERE status = 'queued';
CREATE INDEX jobs_leased ON jobs (kind, lease_until) WHERE status = 'running';
