-- RFC 3161 time-stamps of signed checkpoints (vault.anchors). One token per checkpoint size:
-- the TSA's whole TimeStampResp (DER) as received, its message imprint (SHA-256 of the
-- checkpoint note's body) and the time it attests. Append-only like the ledger: the triggers
-- are ENABLE ALWAYS and the app role holds only SELECT and INSERT (vault/schema.py). A token is
-- self-authenticating (the TSA's signature, checked again by evault-verify): a row forged in
-- the database without the TSA's key does not verify.

CREATE TABLE ledger_timestamps (
    size       bigint PRIMARY KEY CHECK (size >= 0),
    imprint    bytea NOT NULL CHECK (octet_length(imprint) = 32),
    token      bytea NOT NULL CHECK (octet_length(token) <= 1048576),
    gen_time   timestamptz NOT NULL,
    tsa        text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER ledger_timestamps_append_only BEFORE UPDATE OR DELETE ON ledger_timestamps
    FOR EACH ROW EXECUTE FUNCTION evault_forbid_change();
CREATE TRIGGER ledger_timestamps_no_truncate BEFORE TRUNCATE ON ledger_timestamps
    FOR EACH STATEMENT EXECUTE FUNCTION evault_forbid_change();
ALTER TABLE ledger_timestamps ENABLE ALWAYS TRIGGER ledger_timestamps_append_only;
ALTER TABLE ledger_timestamps ENABLE ALWAYS TRIGGER ledger_timestamps_no_truncate;
