"""Route.write marks exactly the routes that change state.

The cluster sends those to the leader and the security layer asks a writer's role for them,
so a wrong mark is a lost write or a hole. The two sets below are written out here, not taken
from the table: a new route fails this test until it is placed in one of them.
"""

from __future__ import annotations

from tqd.http.app import ROUTES

WRITES = {
    ("POST", "/v1/queues/{queue}/jobs"),  # enqueue
    ("DELETE", "/v1/queues/{queue}/jobs"),  # purge
    ("DELETE", "/v1/queues/{queue}"),  # delete a queue
    ("POST", "/v1/queues/{queue}/pause"),
    ("POST", "/v1/queues/{queue}/resume"),
    ("POST", "/v1/queues/{queue}/redrive"),
    ("POST", "/v1/lease"),  # a lease moves jobs to active
    ("POST", "/v1/ack"),  # bulk ack
    ("POST", "/v1/jobs/{id}/ack"),
    ("POST", "/v1/jobs/{id}/fail"),
    ("POST", "/v1/jobs/{id}/heartbeat"),  # extends the lease, may store progress
    ("POST", "/v1/jobs/{id}/release"),
    ("POST", "/v1/jobs/{id}/retry"),
    ("DELETE", "/v1/jobs/{id}"),  # cancel
}
READS = {
    ("GET", "/v1/queues"),
    ("GET", "/v1/queues/{queue}"),
    ("GET", "/v1/queues/{queue}/jobs"),
    ("GET", "/v1/jobs/{id}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/cluster"),
    ("GET", "/v1/events"),  # reads the log, as a follower's fetch does
    ("GET", "/v1/history"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/ui"),  # the dashboard's files
    ("GET", "/ui/"),
    ("GET", "/ui/{file}"),
    ("GET", "/v1/_repl/log"),  # a follower's fetch: reads the leader's log (and pins it)
    ("GET", "/v1/_repl/snapshot"),
}


def test_every_route_is_marked_write_or_read_as_it_should() -> None:
    assert all(type(r.write) is bool for r in ROUTES)
    marked_write = {(r.method, r.path) for r in ROUTES if r.write}
    marked_read = {(r.method, r.path) for r in ROUTES if not r.write}
    assert marked_write == WRITES, f"wrongly read: {WRITES - marked_write}, wrongly write: {marked_write - WRITES}"
    assert marked_read == READS, f"routes to place in WRITES or READS: {marked_read - READS}"
    assert len(ROUTES) == len(WRITES | READS)  # no route twice


def test_a_get_never_writes() -> None:
    """GET is a safe method: proxies and browsers repeat and prefetch it."""
    assert not [r.path for r in ROUTES if r.method == "GET" and r.write]
