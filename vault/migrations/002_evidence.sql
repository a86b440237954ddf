-- Evidence: one row per distinct original (by SHA-256), its offers, and its renditions.
-- Rows here are working state under access control; what they claim is proven by the ledger
-- entry each one names (ledger_idx).

CREATE TABLE evidence (
    id              uuid PRIMARY KEY,
    sha256          text NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size            bigint NOT NULL CHECK (size >= 0),
    ledger_idx      bigint NOT NULL UNIQUE REFERENCES ledger_entries (idx),
    dock_id         text,
    device_id       text,
    officer_id      text,
    recorded_at     timestamptz,
    file_name       text NOT NULL,
    extension       text NOT NULL DEFAULT '',
    metadata        jsonb NOT NULL DEFAULT '{}',
    acquired_at     timestamptz NOT NULL DEFAULT now(),
    label_level     smallint NOT NULL DEFAULT 1 CHECK (label_level BETWEEN 0 AND 4),
    label_caveats   text[] NOT NULL DEFAULT '{}',
    category        text NOT NULL DEFAULT 'ordinary' CHECK (category IN ('ordinary', 'important')),
    media_status    text NOT NULL DEFAULT 'pending',
    media_reason    text,
    probe           jsonb,
    integrity       text NOT NULL DEFAULT 'ok' CHECK (integrity IN ('ok', 'mismatch', 'missing')),
    last_scrub_at   timestamptz,
    disposed_at     timestamptz
);
CREATE INDEX evidence_officer ON evidence (officer_id, acquired_at, id);
CREATE INDEX evidence_device ON evidence (device_id, acquired_at, id);
CREATE INDEX evidence_dock ON evidence (dock_id, acquired_at, id);
CREATE INDEX evidence_recorded ON evidence (recorded_at, id);
CREATE INDEX evidence_acquired ON evidence (acquired_at, id);

-- Every time a file is offered (first acquisition, or a re-offer of content already held).
CREATE TABLE evidence_offers (
    id          bigserial PRIMARY KEY,
    evidence_id uuid NOT NULL REFERENCES evidence (id),
    ledger_idx  bigint NOT NULL UNIQUE REFERENCES ledger_entries (idx),
    dock_id     text,
    source_name text NOT NULL,
    reoffer     boolean NOT NULL,
    offered_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX evidence_offers_evidence ON evidence_offers (evidence_id);

-- Files refused at the door, kept in quarantine with their reason.
CREATE TABLE quarantine (
    id            bigserial PRIMARY KEY,
    ledger_idx    bigint NOT NULL UNIQUE REFERENCES ledger_entries (idx),
    dock_id       text,
    source_name   text NOT NULL,
    stored_as     text NOT NULL,
    reason        text NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now()
);

-- Derived files: proxy, poster, clip, fingerprint. A rendition's label is never below its
-- source's (enforced by the code that writes it, checked here too).
CREATE TABLE renditions (
    id            uuid PRIMARY KEY,
    evidence_id   uuid NOT NULL REFERENCES evidence (id),
    kind          text NOT NULL CHECK (kind IN ('proxy', 'poster', 'clip', 'fingerprint')),
    sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size          bigint NOT NULL CHECK (size >= 0),
    media_type    text NOT NULL,
    ledger_idx    bigint NOT NULL UNIQUE REFERENCES ledger_entries (idx),
    label_level   smallint NOT NULL CHECK (label_level BETWEEN 0 AND 4),
    label_caveats text[] NOT NULL DEFAULT '{}',
    params        jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX renditions_evidence ON renditions (evidence_id, kind);
-- One proxy, poster and fingerprint per evidence; clips may be many.
CREATE UNIQUE INDEX renditions_one_per_kind ON renditions (evidence_id, kind)
    WHERE kind IN ('proxy', 'poster', 'fingerprint');
