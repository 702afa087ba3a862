"""Storage: the LMDB schema, key encoding and typed transactions (store.py), the replication
log of effects and its follower-side apply (log.py), snapshots.

It knows the records of ``tqd.queue.records`` (to encode them) but no queue rule, no HTTP and
no event loop: everything here is synchronous and runs in the writer (or in a reader thread).
"""
