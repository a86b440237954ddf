-- Encryption at rest (DESIGN §5, issue 9). One row per sealed object: its data key (DEK),
-- wrapped by a key-encryption key (KEK) kept outside the database and the blob store.
--
-- This table is also THE record of which objects are sealed: content whose SHA-256 has a row
-- here is stored encrypted at <store>/sealed/sha256/<2 hex>/<2 hex>/<sha256>.<object id hex>
-- and read only through it; content without a row is plain at objects/sha256/... (vault.storage.storage).
-- A copy of this table reveals nothing: a wrapped key opens only with its KEK, and only for the
-- object id and plaintext SHA-256 it is bound to (vault.storage.keyring).
--
-- Rows are written in the same transaction as what makes the object live (the evidence or
-- rendition row, or a re-encryption after a label was raised); key rotation replaces
-- kek_id + wrapped with compare-and-swap updates and never touches the objects.

CREATE TABLE object_keys (
    sha256      text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    object_id   bytea NOT NULL UNIQUE CHECK (octet_length(object_id) = 16),
    kek_id      text NOT NULL CHECK (kek_id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'),
    wrapped     bytea NOT NULL CHECK (octet_length(wrapped) = 61),
    chunk_size  integer NOT NULL CHECK (chunk_size BETWEEN 4096 AND 4194304),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Rotation scans the rows under one KEK in object-id order.
CREATE INDEX object_keys_kek ON object_keys (kek_id, object_id);
