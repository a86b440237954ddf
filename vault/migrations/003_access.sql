-- Principals, tokens, cases, evidence links, labels, legal holds and dispositions (DESIGN §5).
-- Every change here is made in the same transaction as the ledger entry that records it (the
-- row names that entry in ledger_idx). History tables are append-only like the ledger: the app
-- role gets SELECT and INSERT only (vault/schema.py) and ENABLE ALWAYS triggers refuse UPDATE,
-- DELETE and TRUNCATE for every role. Current links are computed from the link history, so no
-- row deletion can hide a link from access control or from retention.

CREATE TABLE principals (
    id           text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$'),
    display_name text NOT NULL DEFAULT '',
    clearance    smallint NOT NULL CHECK (clearance BETWEEN 0 AND 4),
    caveats      text[] NOT NULL DEFAULT '{}'
                 CHECK (caveats <@ ARRAY['commercial_secret', 'personal_privacy']),
    roles        text[] NOT NULL DEFAULT '{}'
                 CHECK (roles <@ ARRAY['dock', 'officer', 'reviewer', 'legal_reviewer',
                                       'case_system', 'auditor', 'admin']),
    officer_id   text,
    dock_ids     text[] NOT NULL DEFAULT '{}',
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    ledger_idx   bigint NOT NULL REFERENCES ledger_entries (idx)  -- the latest change
);

-- Case assignments (need-to-know). The case may be assigned before the case system registers it.
CREATE TABLE principal_cases (
    principal_id text NOT NULL REFERENCES principals (id),
    case_id      text NOT NULL,
    assigned_at  timestamptz NOT NULL DEFAULT now(),
    ledger_idx   bigint NOT NULL REFERENCES ledger_entries (idx),
    PRIMARY KEY (principal_id, case_id)
);
CREATE INDEX principal_cases_case ON principal_cases (case_id);

-- Bearer tokens: only SHA-256 of the token is stored, never the token.
CREATE TABLE tokens (
    id           text PRIMARY KEY CHECK (id ~ '^tok_[0-9a-f]{16}$'),
    principal_id text NOT NULL REFERENCES principals (id),
    token_hash   bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    comment      text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX tokens_principal ON tokens (principal_id);

-- Cases from the case system. The title is plaintext here (under access control) and only a
-- commitment in the ledger.
CREATE TABLE cases (
    id            text PRIMARY KEY CHECK (id ~ '^[^[:cntrl:]]{1,128}$'),
    title         text NOT NULL,
    label_level   smallint NOT NULL CHECK (label_level BETWEEN 0 AND 4),
    label_caveats text[] NOT NULL DEFAULT '{}'
                  CHECK (label_caveats <@ ARRAY['commercial_secret', 'personal_privacy']),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    ledger_idx    bigint NOT NULL REFERENCES ledger_entries (idx)  -- the latest change
);

-- Link history: a link is current when its newest row (highest ledger_idx) is 'linked'.
CREATE TABLE case_evidence_history (
    ledger_idx   bigint PRIMARY KEY REFERENCES ledger_entries (idx),
    case_id      text NOT NULL REFERENCES cases (id),
    evidence_id  uuid NOT NULL REFERENCES evidence (id),
    action       text NOT NULL CHECK (action IN ('linked', 'unlinked')),
    principal_id text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX case_evidence_history_case ON case_evidence_history (case_id, evidence_id, ledger_idx);
CREATE INDEX case_evidence_history_evidence
    ON case_evidence_history (evidence_id, case_id, ledger_idx);

-- Every label ever set on evidence, renditions and cases.
CREATE TABLE label_history (
    ledger_idx    bigint NOT NULL REFERENCES ledger_entries (idx),
    target_kind   text NOT NULL CHECK (target_kind IN ('evidence', 'rendition', 'case')),
    target_id     text NOT NULL,
    label_level   smallint NOT NULL CHECK (label_level BETWEEN 0 AND 4),
    label_caveats text[] NOT NULL,
    principal_id  text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_kind, target_id, ledger_idx)
);

-- Legal holds on one evidence or on a case (covering every evidence ever linked to it).
CREATE TABLE legal_holds (
    id           bigserial PRIMARY KEY,
    evidence_id  uuid REFERENCES evidence (id),
    case_id      text REFERENCES cases (id),
    reason       text NOT NULL,
    placed_by    text NOT NULL,
    placed_at    timestamptz NOT NULL DEFAULT now(),
    placed_idx   bigint NOT NULL REFERENCES ledger_entries (idx),
    released_at  timestamptz,
    released_idx bigint REFERENCES ledger_entries (idx),
    CHECK ((evidence_id IS NULL) <> (case_id IS NULL)),
    CHECK ((released_at IS NULL) = (released_idx IS NULL))
);
CREATE INDEX legal_holds_evidence ON legal_holds (evidence_id) WHERE released_at IS NULL;
CREATE INDEX legal_holds_case ON legal_holds (case_id) WHERE released_at IS NULL;

-- One row per disposed evidence, written with its `disposed` entry (before the blob goes).
CREATE TABLE dispositions (
    evidence_id uuid PRIMARY KEY REFERENCES evidence (id),
    ledger_idx  bigint NOT NULL UNIQUE REFERENCES ledger_entries (idx),
    sha256      text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);

-- Which evidence, rendition or case each entry is about (entries commit to case ids and
-- targets, so the audit trail is found here and through ledger_openings).
CREATE TABLE ledger_refs (
    ref_kind   text NOT NULL CHECK (ref_kind IN ('evidence', 'rendition', 'case')),
    ref_id     text NOT NULL,
    ledger_idx bigint NOT NULL REFERENCES ledger_entries (idx),
    PRIMARY KEY (ref_kind, ref_id, ledger_idx)
);

-- Principal trail: openings by field and value (hashed: values may be long).
CREATE INDEX ledger_openings_field_value ON ledger_openings (field, sha256(value));

CREATE INDEX evidence_label ON evidence (label_level, acquired_at, id);
CREATE INDEX renditions_label ON renditions (evidence_id, label_level);

CREATE TRIGGER case_evidence_history_append_only BEFORE UPDATE OR DELETE ON case_evidence_history
    FOR EACH ROW EXECUTE FUNCTION evault_forbid_change();
CREATE TRIGGER case_evidence_history_no_truncate BEFORE TRUNCATE ON case_evidence_history
    FOR EACH STATEMENT EXECUTE FUNCTION evault_forbid_change();
ALTER TABLE case_evidence_history ENABLE ALWAYS TRIGGER case_evidence_history_append_only;
ALTER TABLE case_evidence_history ENABLE ALWAYS TRIGGER case_evidence_history_no_truncate;

CREATE TRIGGER label_history_append_only BEFORE UPDATE OR DELETE ON label_history
    FOR EACH ROW EXECUTE FUNCTION evault_forbid_change();
CREATE TRIGGER label_history_no_truncate BEFORE TRUNCATE ON label_history
    FOR EACH STATEMENT EXECUTE FUNCTION evault_forbid_change();
ALTER TABLE label_history ENABLE ALWAYS TRIGGER label_history_append_only;
ALTER TABLE label_history ENABLE ALWAYS TRIGGER label_history_no_truncate;

CREATE TRIGGER dispositions_append_only BEFORE UPDATE OR DELETE ON dispositions
    FOR EACH ROW EXECUTE FUNCTION evault_forbid_change();
CREATE TRIGGER dispositions_no_truncate BEFORE TRUNCATE ON dispositions
    FOR EACH STATEMENT EXECUTE FUNCTION evault_forbid_change();
ALTER TABLE dispositions ENABLE ALWAYS TRIGGER dispositions_append_only;
ALTER TABLE dispositions ENABLE ALWAYS TRIGGER dispositions_no_truncate;

CREATE TRIGGER ledger_refs_append_only BEFORE UPDATE OR DELETE ON ledger_refs
    FOR EACH ROW EXECUTE FUNCTION evault_forbid_change();
CREATE TRIGGER ledger_refs_no_truncate BEFORE TRUNCATE ON ledger_refs
    FOR EACH STATEMENT EXECUTE FUNCTION evault_forbid_change();
ALTER TABLE ledger_refs ENABLE ALWAYS TRIGGER ledger_refs_append_only;
ALTER TABLE ledger_refs ENABLE ALWAYS TRIGGER ledger_refs_no_truncate;
