"""Storage: the LMDB schema, key encoding and typed transactions that record their effects,
snapshots and the follower-side apply (store.py); the replication log's format, positions
and rules (log.py); the data dir's lock (lock.py).

It knows the records of ``tqd.queue.records`` (to encode them) but no queue rule, no HTTP and
no event loop: everything here is synchronous and runs in the writer process (or, read-only,
in the server). The core reaches it only through the protocols of ``tqd.queue.ports``.
"""
