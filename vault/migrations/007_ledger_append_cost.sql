-- Cheaper appends (issue 2: the ledger bench against a plain COPY). Each index on
-- ledger_entries is maintained for every appended entry; measured on the embedded server, the
-- (kind, idx) index cost about as much backend CPU per entry as the primary key itself.
--
-- Nothing needs a full (kind, idx) index: the only lookups by kind are of the rare `scrub`
-- entries (vault.scrub), served by a partial index that other kinds never enter, and the
-- yearly statistics (vault.statistics), which filter `accessed`/`denied` entries by
-- `created_at`: a BRIN index on created_at (entries are appended in time order) serves that
-- range far better than an index on kind did, for a few bytes per 128 pages.
--
-- The primary key (uniqueness, foreign keys, reads by index), the CHECKs, the revoked
-- privileges and the ENABLE ALWAYS triggers stay as they were.

DROP INDEX ledger_entries_kind;
CREATE INDEX ledger_entries_scrub ON ledger_entries (idx) WHERE kind = 'scrub';
CREATE INDEX ledger_entries_created ON ledger_entries USING brin (created_at)
    WITH (autosummarize = on);

-- Tiles are 32-byte hashes, incompressible: keep PostgreSQL from trying to compress every
-- rewritten 8 KiB tile before it moves it out of line.
ALTER TABLE ledger_tiles ALTER COLUMN hashes SET STORAGE EXTERNAL;

-- The sequencer's first statement in its append transaction: take the ledger's advisory lock,
-- then read the committed tree state, in one round trip. PL/pgSQL runs the SELECT as a new
-- statement after the lock is held, so (READ COMMITTED) it sees every append committed before.
CREATE FUNCTION evault_ledger_lock(lock_key bigint, OUT size bigint, OUT root bytea)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT s.size, s.root INTO size, root FROM ledger_state s;
END
$$;
