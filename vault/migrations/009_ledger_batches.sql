-- Authenticated appends (DESIGN §7: the database is not trusted). Each batch the sequencer
-- commits leaves one row here, written in the batch's own transaction: its first index, its
-- entry count, the tree it leaves (size, root), the batch's concatenated 32-byte leaf hashes,
-- and ``tag``, an HMAC by the host's MAC key (keys/ledger.mac, never in PostgreSQL) over all of
-- them (vault/keys/hostmac.py, HostMac.batch). Nobody without that key can make a row that verifies:
-- the checkpointer signs a tree only if the batches since the last signed checkpoint are
-- contiguous, each tag verifies and the last one leaves exactly that tree; fsck compares every
-- entry's leaf hash with its batch's and names the first entry that differs or lies outside
-- every batch. Append-only like the ledger (vault/schema.py and the triggers below).

CREATE TABLE ledger_batches (
    first  bigint PRIMARY KEY CHECK (first >= 0),
    count  integer NOT NULL CHECK (count > 0),
    size   bigint NOT NULL CHECK (size = first + count),
    root   bytea NOT NULL CHECK (octet_length(root) = 32),
    leaves bytea NOT NULL CHECK (octet_length(leaves) = 32 * count),
    tag    bytea NOT NULL CHECK (octet_length(tag) = 32)
);
-- Hashes are incompressible: do not try to compress the leaves before moving them out of line.
ALTER TABLE ledger_batches ALTER COLUMN leaves SET STORAGE EXTERNAL;

CREATE TRIGGER ledger_batches_append_only BEFORE UPDATE OR DELETE ON ledger_batches
    FOR EACH ROW EXECUTE FUNCTION evault_forbid_change();
CREATE TRIGGER ledger_batches_no_truncate BEFORE TRUNCATE ON ledger_batches
    FOR EACH STATEMENT EXECUTE FUNCTION evault_forbid_change();
ALTER TABLE ledger_batches ENABLE ALWAYS TRIGGER ledger_batches_append_only;
ALTER TABLE ledger_batches ENABLE ALWAYS TRIGGER ledger_batches_no_truncate;

-- Migration 007's function, which also writes the batch row when it applies the batch (still
-- one round trip). The old signature is dropped: a batch can no longer be written without its
-- row.
DROP FUNCTION evault_ledger_advance(
    bigint, bigint, bytea, bigint, bytea, smallint[], bigint[], bytea[], bigint[], text[], bytea[]);

CREATE FUNCTION evault_ledger_advance(
    lock_key bigint, base_size bigint, base_root bytea, new_size bigint, new_root bytea,
    tile_levels smallint[], tile_idxs bigint[], tile_hashes bytea[],
    entry_idxs bigint[], entry_kinds text[], entry_datas bytea[],
    batch_leaves bytea, batch_tag bytea,
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
    INSERT INTO ledger_batches (first, count, size, root, leaves, tag)
        VALUES (base_size, new_size - base_size, new_size, new_root, batch_leaves, batch_tag);
    IF entry_idxs IS NOT NULL THEN
        INSERT INTO ledger_entries (idx, kind, data)
            SELECT * FROM unnest(entry_idxs, entry_kinds, entry_datas);
    END IF;
    size := new_size;
    root := new_root;
END
$$;
