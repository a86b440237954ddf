-- Evidence and renditions bound to the ledger (DESIGN §7): a database insider, superuser or the
-- service's own role, must not be able to change what decides access to footage or which bytes
-- an id serves. Each row carries `tag`, an HMAC made with the host's key (keys/ledger.mac, never
-- in the database) over its table, id, bound values and `state_idx`: the index of the newest
-- ledger entry that set those values (the `acquired` / `derived` entry first, then each
-- `labelled`, `disposed` or category entry). vault/evidence owns these tables; every read that
-- decides access or serves bytes verifies the tag and fails closed.
--
-- Bound in evidence: id, sha256, size, ledger_idx, dock_id, device_id, officer_id, recorded_at,
-- acquired_at, file_name, extension, label_level, label_caveats, category, disposed_at.
-- Bound in renditions: id, evidence_id, kind, sha256, size, media_type, ledger_idx, label_level,
-- label_caveats. The rest (media status, probe, metadata, scrub marks, params) is working state.
--
-- Rows written before this migration have no tag and fail verification until re-tagged from
-- the ledger by the operator (`fsck --state`); a fresh vault never has such rows.

ALTER TABLE evidence ADD COLUMN tag bytea, ADD COLUMN state_idx bigint;
ALTER TABLE renditions ADD COLUMN tag bytea, ADD COLUMN state_idx bigint;
UPDATE evidence SET state_idx = ledger_idx;
UPDATE renditions SET state_idx = ledger_idx;
ALTER TABLE evidence ALTER COLUMN state_idx SET NOT NULL;
ALTER TABLE renditions ALTER COLUMN state_idx SET NOT NULL;
-- acquired_at is set by the service (the tag covers it), never by the database's clock.
ALTER TABLE evidence ALTER COLUMN acquired_at DROP DEFAULT;
