"""Storage: the bytes, content-addressed and write-once.

The file store (``blobstore``, ``blobcopy``) and the S3 Object Lock store (``s3store``,
``s3upload``, ``s3client``) behind one contract (``blobcontract``); sealing at rest
(``sealing``, ``sealwrite``: AES-256-GCM chunks), key-encryption keys (``kek``) and wrapped data
keys (``keyring``, ``keystore_db``: owns ``object_keys``), re-encryption jobs (``reseal``), the
read path (``content``, ``prefetch``, ``pipeline``). ``storage.open_storage`` is the one factory:
the runtime opens one Storage per process.
"""
