"""Keys on the service host, never in the database: the log's Ed25519 signing key
(``signing``) and the host MAC secret (``hostmac``) behind batch authenticators and row tags.

Light on purpose (standard library, ``cryptography`` and ``verify``): commands that only read
a key (``evault ledger vkey``) import nothing else.
"""
