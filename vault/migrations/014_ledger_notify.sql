-- Several processes, one log: every committed append and every stored checkpoint is announced
-- with NOTIFY, delivered by PostgreSQL at commit to every listening session (whichever process
-- or host made it). The checkpointer that leads (vault/ledger/checkpointer.py) wakes on
-- ``evault_ledger`` to sign what any process appended; every process wakes on
-- ``evault_checkpoint`` to answer callers waiting for a checkpoint. The payload is the new tree
-- size (a hint only: listeners read the state and verify what they sign). A notification lost
-- or suppressed (the trigger disabled by an insider) costs latency, not safety: the leader also
-- polls.

CREATE FUNCTION evault_ledger_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], NEW.size::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER ledger_state_notify AFTER UPDATE OF size ON ledger_state
    FOR EACH ROW EXECUTE FUNCTION evault_ledger_notify('evault_ledger');
CREATE TRIGGER ledger_checkpoints_notify AFTER INSERT ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION evault_ledger_notify('evault_checkpoint');
