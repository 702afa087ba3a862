"""The cluster: lease, replication, roles.

So far it holds the leader lease's storage (lease.py: the Lease record, the LeaseStore
contract, the file:// store; lease_s3.py: the s3:// store on obstore). The election loop
that drives it, replication and the roles come later.

It may import ``tqd.errors`` and ``tqd.config``; never ``tqd.http``, ``tqd.service`` or
aiohttp (a store talks to its backend through obstore or the local file system only).
"""
