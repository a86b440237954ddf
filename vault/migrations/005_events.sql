-- Events for the case system's modules (legal review, publicity): a transactional outbox.
-- An event row is written in the same transaction as what it reports; a dispatcher fans it
-- out to each configured subscriber as a delivery, retried with backoff until delivered.

CREATE TABLE event_outbox (
    id         bigserial PRIMARY KEY,
    type       text NOT NULL CHECK (type IN (
                   'evidence.acquired', 'evidence.linked', 'media.ready', 'integrity.failure')),
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE event_deliveries (
    id              bigserial PRIMARY KEY,
    event_id        bigint NOT NULL REFERENCES event_outbox (id),
    subscriber      text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    UNIQUE (event_id, subscriber)
);
CREATE INDEX event_deliveries_due ON event_deliveries (next_attempt_at) WHERE status = 'pending';
