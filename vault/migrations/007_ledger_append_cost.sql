-- Cheaper appends (issue 2: the ledger bench against a plain COPY). Each index on
-- ledger_entries is maintained for every appended entry; measured on the embedded server, the
-- (kind, idx) index cost about as much backend CPU per entry as the primary key itself.
--
-- Nothing needs a full (kind, idx) index: the only lookups by kind are of the rare `scrub`
-- entries (vault.ops.scrub), served by a partial index that other kinds never enter, and the
-- yearly statistics (vault.review.statistics), which filter `accessed`/`denied` entries by
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

-- The sequencer's first statement in its append transaction, one round trip: take the ledger's
-- advisory lock, then read the committed tree state (PL/pgSQL runs that SELECT as a new
-- statement after the lock is held, so in READ COMMITTED it sees every append committed
-- before). If the state is the one the batch was prepared on (base_size, base_root), write the
-- batch's tiles, the new state and, when given, its entries, and return applied = true with the
-- new state. Otherwise write nothing and return applied = false with the committed state: the
-- caller prepares the batch again on that tree, still holding the lock, and calls once more.
CREATE FUNCTION evault_ledger_advance(
    lock_key bigint, base_size bigint, base_root bytea, new_size bigint, new_root bytea,
    tile_levels smallint[], tile_idxs bigint[], tile_hashes bytea[],
    entry_idxs bigint[], entry_kinds text[], entry_datas bytea[],
    OUT applied boolean, OUT size bigint, OUT root bytea)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT s.size, s.root INTO size, root FROM ledger_state s;
    applied := coalesce(size = base_size AND root = base_root, false);
    IF NOT applied THEN
        RETURN;
    END IF;
    INSERT INTO ledger_tiles (level, idx, hashes)
        SELECT * FROM unnest(tile_levels, tile_idxs, tile_hashes)
        ON CONFLICT (level, idx) DO UPDATE SET hashes = EXCLUDED.hashes;
    UPDATE ledger_state SET size = new_size, root = new_root;
    IF entry_idxs IS NOT NULL THEN
        INSERT INTO ledger_entries (idx, kind, data)
            SELECT * FROM unnest(entry_idxs, entry_kinds, entry_datas);
    END IF;
    size := new_size;
    root := new_root;
END
$$;
