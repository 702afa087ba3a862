"""The cluster: the leader lease, log shipping, the roles.

- lease.py, lease_s3.py: the Lease record and its stores (file:// with flock, s3:// with
  conditional writes through obstore);
- node.py: the lease loop and the node's role (leader, follower), driving the service;
- follower.py: a follower's fetch-and-apply loop, and its bootstrap from a snapshot;
- replicas.py: the leader's view of its followers, sync waits, the in-sync set.

The package drives tqd.service (and talks HTTP to other nodes through aiohttp's client);
it knows neither the HTTP server, the writer process nor LMDB (pyproject's contract).
"""
