-- Redacted copies (vault.redaction, ingest.redactjobs): a rendition of kind `redacted`, recorded
-- by a `redacted` ledger entry that names the original's `acquired` entry and the spec's hash;
-- many per evidence, like clips. A legal reviewer's release of a copy at a lower label is a
-- rendition of kind `released` (the same bytes), recorded by its own `released` entry: the kind
-- is bound (tagged), so no database edit can turn an unreleased copy into a released one.
ALTER TABLE renditions DROP CONSTRAINT renditions_kind_check;
ALTER TABLE renditions ADD CONSTRAINT renditions_kind_check
    CHECK (kind IN ('proxy', 'poster', 'clip', 'fingerprint', 'redacted', 'released'));
