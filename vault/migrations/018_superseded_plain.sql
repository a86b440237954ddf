-- Plain versions superseded by a sealed copy (vault.storage.superseded): on the S3 store a plain
-- object re-encrypted after its label rose cannot be deleted while its COMPLIANCE Object Lock
-- holds. One row per such version, written in the transaction of the `retention` ledger entry
-- (op `plain-superseded`) that records it; `tag` is the host MAC tag over the row's key, its
-- sealed object id and that entry's index (vault.keys.hostmac), so a row inserted or edited in
-- the database does not verify and deletes nothing. `removed_idx`: the `retention` entry (op
-- `plain-removed`) of its deletion, once its lock expired and its sealed copy read back.
-- `locked_until`: the version's retain-until date as last read from the store (a lock only ever
-- grows, so until then nothing is asked of the store; not covered by the tag: a date edited
-- earlier only makes the store be asked, one edited later delays the deletion).
CREATE TABLE superseded_plain (
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    version_id   text NOT NULL CHECK (length(version_id) BETWEEN 1 AND 1024),
    object_id    bytea NOT NULL CHECK (octet_length(object_id) = 16),
    ledger_idx   bigint NOT NULL,
    tag          bytea NOT NULL CHECK (octet_length(tag) = 32),
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    removed_idx  bigint,
    PRIMARY KEY (sha256, version_id)
);
CREATE INDEX superseded_plain_pending ON superseded_plain (ledger_idx) WHERE removed_idx IS NULL;
