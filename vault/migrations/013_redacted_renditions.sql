-- Redacted copies (vault.redaction, ingest.redactjobs): a rendition of kind `redacted`, recorded
-- by a `redacted` ledger entry that names the original's `acquired` entry and the spec's hash.
-- Many per evidence, like clips.
ALTER TABLE renditions DROP CONSTRAINT renditions_kind_check;
ALTER TABLE renditions ADD CONSTRAINT renditions_kind_check
    CHECK (kind IN ('proxy', 'poster', 'clip', 'fingerprint', 'redacted'));
