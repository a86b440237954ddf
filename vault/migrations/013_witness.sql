-- Witness cosignatures (vault.anchors), both directions. Append-only like the ledger: the
-- triggers are ENABLE ALWAYS and the app role holds only SELECT and INSERT (vault/schema.py).
--
-- ledger_cosignatures: cosignature/v1 lines that witnesses returned for this log's
-- checkpoints, stored only after they verified with the configured witness key for that
-- checkpoint's body. Self-authenticating: a row forged without the witness's key does not verify.
--
-- witness_cosigned: as a witness for other logs, every checkpoint this service cosigned (its
-- note body and our own cosignature line). The newest row per origin is the witness's state;
-- it is re-verified with the witness key before use, and a host file outside the database
-- (witness.state_file) keeps the highest size per origin so deleting rows cannot roll it back.
--
-- witness_refusals: checkpoints validly signed by a witnessed log that were refused (a fork:
-- same size, other root; or a consistency proof that does not verify): evidence of misbehaviour.

CREATE TABLE ledger_cosignatures (
    size       bigint NOT NULL CHECK (size >= 0),
    witness    text NOT NULL CHECK (octet_length(witness) <= 1024),
    line       text NOT NULL CHECK (octet_length(line) <= 4096),
    cosigned   timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (size, witness)
);

CREATE TABLE witness_cosigned (
    origin     text NOT NULL CHECK (octet_length(origin) <= 1024),
    size       bigint NOT NULL CHECK (size >= 0),
    root       bytea NOT NULL CHECK (octet_length(root) = 32),
    body       text NOT NULL CHECK (octet_length(body) <= 65536),
    line       text NOT NULL CHECK (octet_length(line) <= 4096),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (origin, size)
);

CREATE TABLE witness_refusals (
    id         bigserial PRIMARY KEY,
    origin     text NOT NULL CHECK (octet_length(origin) <= 1024),
    size       bigint NOT NULL,
    reason     text NOT NULL,
    request    text NOT NULL CHECK (octet_length(request) <= 1048576),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER ledger_cosignatures_append_only BEFORE UPDATE OR DELETE ON ledger_cosignatures
    FOR EACH ROW EXECUTE FUNCTION evault_forbid_change();
CREATE TRIGGER ledger_cosignatures_no_truncate BEFORE TRUNCATE ON ledger_cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION evault_forbid_change();
ALTER TABLE ledger_cosignatures ENABLE ALWAYS TRIGGER ledger_cosignatures_append_only;
ALTER TABLE ledger_cosignatures ENABLE ALWAYS TRIGGER ledger_cosignatures_no_truncate;

CREATE TRIGGER witness_cosigned_append_only BEFORE UPDATE OR DELETE ON witness_cosigned
    FOR EACH ROW EXECUTE FUNCTION evault_forbid_change();
CREATE TRIGGER witness_cosigned_no_truncate BEFORE TRUNCATE ON witness_cosigned
    FOR EACH STATEMENT EXECUTE FUNCTION evault_forbid_change();
ALTER TABLE witness_cosigned ENABLE ALWAYS TRIGGER witness_cosigned_append_only;
ALTER TABLE witness_cosigned ENABLE ALWAYS TRIGGER witness_cosigned_no_truncate;

CREATE TRIGGER witness_refusals_append_only BEFORE UPDATE OR DELETE ON witness_refusals
    FOR EACH ROW EXECUTE FUNCTION evault_forbid_change();
CREATE TRIGGER witness_refusals_no_truncate BEFORE TRUNCATE ON witness_refusals
    FOR EACH STATEMENT EXECUTE FUNCTION evault_forbid_change();
ALTER TABLE witness_refusals ENABLE ALWAYS TRIGGER witness_refusals_append_only;
ALTER TABLE witness_refusals ENABLE ALWAYS TRIGGER witness_refusals_no_truncate;
