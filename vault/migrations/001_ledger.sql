-- The Merkle ledger (DESIGN §3). Entries, openings and checkpoints are append-only: the
-- triggers below are ENABLE ALWAYS, so they fire for every role and for replication too; the
-- app role is also granted no UPDATE, DELETE or TRUNCATE on them (see vault/schema.py).
-- Tiles and the tree state are derived from the entries and may be rebuilt.

CREATE FUNCTION evault_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'evidence-vault: % on % is forbidden: the ledger is append-only',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TABLE ledger_entries (
    idx        bigint PRIMARY KEY CHECK (idx >= 0),
    kind       text NOT NULL,
    data       bytea NOT NULL CHECK (octet_length(data) <= 65535),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_kind ON ledger_entries (kind, idx);

-- Openings of the salted commitments an entry carries: the plaintext stays here, under
-- access control, and travels in exports; the ledger only holds the commitment.
CREATE TABLE ledger_openings (
    idx   bigint NOT NULL REFERENCES ledger_entries (idx),
    field text NOT NULL,
    salt  bytea NOT NULL CHECK (octet_length(salt) = 32),
    value bytea NOT NULL,
    PRIMARY KEY (idx, field)
);

CREATE TABLE ledger_checkpoints (
    id         bigserial PRIMARY KEY,
    size       bigint NOT NULL CHECK (size >= 0),
    root       bytea NOT NULL CHECK (octet_length(root) = 32),
    note       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_checkpoints_size ON ledger_checkpoints (size);

-- C2SP tlog-tiles: concatenated 32-byte hashes of tree level 8*level; a row grows until it
-- holds 256 hashes. Derived from ledger_entries.
CREATE TABLE ledger_tiles (
    level  smallint NOT NULL CHECK (level >= 0),
    idx    bigint NOT NULL CHECK (idx >= 0),
    hashes bytea NOT NULL CHECK (octet_length(hashes) % 32 = 0 AND octet_length(hashes) <= 8192),
    PRIMARY KEY (level, idx)
);

-- The sequencer's integrated size and root: derived, one row.
CREATE TABLE ledger_state (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    size bigint NOT NULL CHECK (size >= 0),
    root bytea NOT NULL CHECK (octet_length(root) = 32)
);
INSERT INTO ledger_state (size, root)
VALUES (0, '\xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION evault_forbid_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION evault_forbid_change();
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_append_only;
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_no_truncate;

CREATE TRIGGER ledger_openings_append_only BEFORE UPDATE OR DELETE ON ledger_openings
    FOR EACH ROW EXECUTE FUNCTION evault_forbid_change();
CREATE TRIGGER ledger_openings_no_truncate BEFORE TRUNCATE ON ledger_openings
    FOR EACH STATEMENT EXECUTE FUNCTION evault_forbid_change();
ALTER TABLE ledger_openings ENABLE ALWAYS TRIGGER ledger_openings_append_only;
ALTER TABLE ledger_openings ENABLE ALWAYS TRIGGER ledger_openings_no_truncate;

CREATE TRIGGER ledger_checkpoints_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION evault_forbid_change();
CREATE TRIGGER ledger_checkpoints_no_truncate BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION evault_forbid_change();
ALTER TABLE ledger_checkpoints ENABLE ALWAYS TRIGGER ledger_checkpoints_append_only;
ALTER TABLE ledger_checkpoints ENABLE ALWAYS TRIGGER ledger_checkpoints_no_truncate;
