-- `unserved` entries (vault/ledger/indoubt.py): an entry committed though the COMMIT that wrote
-- it failed for the service, whose caller was answered with an error, is followed by one naming
-- it. They are rare and looked up by kind (trails, timelines, packages, the resolver): a partial
-- index, like the one of `scrub` entries, costs appends nothing else.
CREATE INDEX ledger_entries_unserved ON ledger_entries (idx) WHERE kind = 'unserved';
