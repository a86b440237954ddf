-- Row tags on the rows that decide access (vault/access/state.py): each row carries
-- HMAC(host key; table, key, bound values, index of the ledger entry that set it). The host key
-- never enters PostgreSQL, so a row inserted or changed in SQL does not verify and is never used.
-- Rows written before this migration have no tag and fail closed until re-tagged.
ALTER TABLE principals ADD COLUMN tag bytea;
ALTER TABLE principal_cases ADD COLUMN tag bytea;
ALTER TABLE cases ADD COLUMN tag bytea;
ALTER TABLE case_evidence_history ADD COLUMN tag bytea;
-- A token names the entry that last set it (token-created, then token-revoked).
ALTER TABLE tokens ADD COLUMN ledger_idx bigint REFERENCES ledger_entries (idx);
ALTER TABLE tokens ADD COLUMN tag bytea;
