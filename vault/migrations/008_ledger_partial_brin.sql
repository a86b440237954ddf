-- Cheaper appends, continued (issue 2). Migration 007 indexed every entry's created_at with a
-- BRIN index for the yearly statistics (vault.review.statistics), which only ever read `accessed` and
-- `denied` entries. Measured with a binary COPY of 1M entries on the embedded server, that
-- index cost 0.10-0.17 µs of backend CPU per entry, about a sixth of an append's database work,
-- for every kind of entry.
--
-- The same BRIN index, partial: only `accessed` and `denied` entries enter it; other kinds pay
-- for the predicate alone. The statistics query filters on exactly that predicate and the
-- created_at range, so it is still served by the index (tests/review check the plan).

DROP INDEX ledger_entries_created;
CREATE INDEX ledger_entries_created ON ledger_entries USING brin (created_at)
    WITH (autosummarize = on) WHERE kind IN ('accessed', 'denied');
