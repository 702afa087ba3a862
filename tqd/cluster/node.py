"""A cluster node: leader election through the lease object, and the node's role.

Every node runs the same lease loop, on its own monotonic clock only (cross-node clocks
are never compared; see ../shared/research/lease.md §2.3):

- **Leader**: renews the lease every TTL/5 with a compare-and-swap on its ETag (``term``
  unchanged, ``renew_seq`` + 1 so every body differs). Its write gate (in the writer
  process, checked right before each commit) stays open until the *send* time of its
  last successful renew + 0.7 × TTL; an unreachable store closes it by itself. A renew
  that loses the swap re-reads: still ours (a renew whose answer was lost) → adopt it;
  another holder → step down at once.
- **Follower**: polls the lease every TTL/5 and follows ``addr`` (tqd.cluster.follower).
  It takes over with a swap (``term`` + 1, the fencing token) once it has seen the same
  ETag for a full TTL, or at once when the holder handed the lease over (``holder`` null).
  Only a node that may lead takes over: ``--can-lead true`` and, with sync replicas, a
  member of the in-sync set (tqd.cluster.replicas), so the new leader holds every
  acknowledged write. Without sync replicas a node behind the lease's ``commit_seq``
  waits one more TTL, so that a caught-up peer wins.
- A new leader writes its term's marker in the log before its gate opens. A leader that
  steps down closes its gate, answers its parked long-polls, fails its sync waits, and
  follows the new leader (from a snapshot if it wrote entries nobody has).
- SIGTERM on the leader hands over: the gate closes, the followers get a moment to catch
  up, and the lease is written with ``holder`` null.

Over TLS (--tls-cert/--tls-key) a node advertises ``https://`` and talks to the leader over
TLS (`node_tls`): it verifies the leader's certificate against --tls-client-ca when set
(the nodes of one cluster share a CA: the one that signed their certificates), else
against the system CAs, and presents its own certificate as its client certificate, so
that a leader requiring client certificates (mutual TLS) lets its followers in.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from ..auth.policy import read_cluster_token
from ..config import Settings
from ..errors import TqdError
from ..service import QueueService
from .follower import Follower
from .lease import Lease, LeaseConflict, LeaseStore, LeaseStoreError
from .replicas import Replicas

log = logging.getLogger("tqd.cluster")
T = TypeVar("T")
GATE_FRACTION = 0.7  # the leader writes until its last renew's send time + this × TTL


def node_tls(s: Settings) -> ssl.SSLContext:
    """How a node checks the leader it follows over https (see the module docstring)."""
    ctx = ssl.create_default_context(cafile=s.tls_client_ca or None)
    if s.tls_cert:  # read once already by the server's context: a bad file stopped the start
        ctx.load_cert_chain(s.tls_cert, s.tls_key)
    return ctx


class Node:
    def __init__(self, settings: Settings, service: QueueService, store: LeaseStore) -> None:
        """Call ``bind`` (once the port is known), then ``start``."""
        self.settings = settings
        self.service = service
        self.store = store
        self.id = settings.node_id
        self.advertise = settings.advertise.rstrip("/")
        self.incarnation = uuid.uuid4().hex
        self.ttl = settings.lease_ttl_s
        self.role = "follower"
        self.term = 0  # the highest lease term seen
        self.lease: Lease | None = None  # as last read or written
        self.etag: str | None = None
        self.seen_etag: str | None = None
        self.seen_at = time.monotonic()  # when seen_etag was first seen (or last renewed)
        self.valid_until = 0.0  # leader: the write gate's end
        self.store_ok = True
        self._renew_seq = 0  # the last renew_seq this node wrote: never reused, even after a
        # write whose answer was lost (which one landed is told by it)
        self.stopping = False  # shutting down: never take the lease
        self.apply_lock = asyncio.Lock()  # a follower's apply or restore, vs becoming leader
        self._lease_lock = asyncio.Lock()  # one lease write at a time
        lag_s = max(0.5, min(2.0, self.ttl / 4))
        self.replicas = Replicas(self.id, settings.sync_replicas, settings.sync_timeout_s, lag_s,
                                 lambda: service.position.seq, lambda: self.leading,
                                 self._write_isr)
        self.follower = Follower(self)
        self.session: aiohttp.ClientSession  # made in start (needs the loop)
        self.leader_changed = asyncio.Event()  # set (and replaced) when leader_url changes

    @property
    def leader_url(self) -> str | None:
        return self.service.leader_url

    @property
    def leading(self) -> bool:
        return self.role == "leader" and time.monotonic() < self.valid_until

    # ---- life cycle --------------------------------------------------------------

    def bind(self, host: str, port: int, tls: bool = False) -> None:
        """The node's name and URL: --node-id and --advertise, else from where it listens."""
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        if not self.advertise:
            self.advertise = f"{'https' if tls else 'http'}://{host}:{port}"
        if not self.id:
            self.id = f"{host}:{port}"
        self.replicas.me = self.id
        self.replicas.isr = [self.id]

    async def start(self) -> None:
        for junk in [*self.settings.data_dir.glob("snapshot-*.in"),
                     *self.settings.data_dir.glob("snapshots/*")]:
            junk.unlink(missing_ok=True)  # half-made snapshots of an earlier run
        headers = {"User-Agent": "tqd-node"}
        if self.settings.cluster_token_file:  # the leader's /v1/_repl/* ask for it (tqd.auth)
            headers["Authorization"] = "Bearer " + read_cluster_token(
                Path(self.settings.cluster_token_file)).decode()
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=16, ssl=node_tls(self.settings)), headers=headers)
        loops = self.service.loops
        loops.start("lease", self._lease_loop)
        loops.start("replication", self.follower.loop)
        loops.start("in-sync-set", self.replicas.loop)

    async def hand_over(self) -> None:
        """Shutdown, first step: hand the lease over if this node leads; lead no more."""
        self.stopping = True
        if self.role == "leader":
            await self._hand_over()

    async def close(self) -> None:
        """Shutdown, last step (after the service stopped the loops)."""
        await self.session.close()
        await self.store.close()

    # ---- the lease loop ------------------------------------------------------------

    async def _call(self, aw: Awaitable[T]) -> T:
        """A lease store call, bounded well inside the TTL (the store has its own timeouts;
        this is the backstop)."""
        try:
            async with asyncio.timeout(max(0.5, self.ttl * 0.3)):
                return await aw
        except TimeoutError:
            raise LeaseStoreError("the lease store did not answer in time") from None

    async def _lease_loop(self, state: Any) -> None:
        tick = self.ttl / 5
        while True:
            started = time.monotonic()
            try:
                if self.role == "leader":
                    await self._renew()
                else:
                    await self._watch()
                state.runs += 1
                state.last_run = time.time()
                if not self.store_ok:
                    log.warning("the lease store %s answers again", self.store.description)
                    self.store_ok = True
            except LeaseStoreError as e:
                state.errors += 1
                if self.store_ok:
                    log.warning("the lease store %s failed: %s%s", self.store.description, e,
                                " (writes stop when the lease lapses)" if self.role == "leader" else "")
                    self.store_ok = False
            for n in self.replicas.forget_idle(max(300.0, 3 * self.ttl)):
                self.service.pin_log(n, 0)
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - started)))

    def _body(self, **changes: Any) -> Lease:
        base = self.lease
        assert base is not None
        self._renew_seq = max(self._renew_seq, base.renew_seq) + 1
        fields: dict[str, Any] = {
            "holder": self.id, "incarnation": self.incarnation, "addr": self.advertise,
            "term": base.term, "renew_seq": self._renew_seq, "ttl_ms": int(self.ttl * 1000),
            "commit_seq": self.service.position.seq, "isr": self.replicas.isr,
            "written_at_ms": int(time.time() * 1000)}
        fields.update(changes)
        return Lease(**fields)

    def _mine(self, lease: Lease) -> bool:
        """Written by this very process (a node's incarnation is new at every start)."""
        return lease.holder == self.id and lease.incarnation == self.incarnation

    async def _swap_mine(self, body: Lease, again: bool = True) -> bool:
        """Write our lease (leader). True: ``body`` is the lease now (the gate moves on if
        its send time is known). False: not written; if another node holds the lease, this
        one has stepped down."""
        assert self.etag is not None
        t_send = time.monotonic()
        try:
            etag = await self._call(self.store.swap(body, self.etag))
        except LeaseConflict:
            got = await self._call(self.store.read())
            if got is None or not self._mine(got[0]):
                await self._step_down(got)
                return False
            # an earlier write of ours landed after all (its answer was lost): is it this one?
            self.lease, self.etag = got
            if got[0].renew_seq == body.renew_seq:
                return True  # (its send time is unknown: the gate moves on at the next renew)
            return again and await self._swap_mine(self._body(isr=body.isr, holder=body.holder),
                                                   again=False)
        self.lease, self.etag = body, etag
        self._open_gate(t_send)
        return True

    async def _renew(self) -> None:
        async with self._lease_lock:
            if self.role == "leader":
                await self._swap_mine(self._body())

    async def _write_isr(self, isr: list[str]) -> bool:
        """Put a new in-sync set in the lease (tqd.cluster.replicas)."""
        async with self._lease_lock:
            if self.role != "leader":
                return False
            try:
                ok = await self._swap_mine(self._body(isr=isr))
            except LeaseStoreError:
                return False
        if ok:
            log.info("in-sync set: %s", ", ".join(isr))
        return ok

    def _open_gate(self, t_send: float) -> None:
        if self.role != "leader" or self.stopping:  # (a renew that ends after a hand-over)
            return
        self.valid_until = t_send + GATE_FRACTION * self.ttl
        self.seen_at = t_send
        self.service.writer.set_gate(self.valid_until)
        self.service.write_gate_until = self.valid_until

    def _observe(self, got: tuple[Lease, str] | None) -> None:
        """A lease read by a follower: note what changed."""
        now = time.monotonic()
        if got is None:
            self.lease = self.etag = None
            self._set_leader(None)
            return
        lease, etag = got
        if etag != self.seen_etag:
            self.seen_etag, self.seen_at = etag, now
        self.lease, self.etag = lease, etag
        self.term = max(self.term, lease.term)
        self._set_leader(lease.addr.rstrip("/") if lease.holder else None)

    def _set_leader(self, url: str | None) -> None:
        if url != self.service.leader_url:
            self.service.leader_url = url
            self.leader_changed.set()
            self.leader_changed = asyncio.Event()

    def _may_lead(self, lease: Lease | None) -> bool:
        if not self.settings.can_lead or self.stopping:
            return False
        if lease is None:
            return True
        return self.settings.sync_replicas == 0 or self.id in lease.isr

    async def _watch(self) -> None:
        got = await self._call(self.store.read())
        self._observe(got)
        if got is not None and self._mine(got[0]):  # a takeover of ours landed unanswered
            await self._become_leader(got[0], got[1], -math.inf, got[0].isr)
            return
        if got is not None and got[0].holder is not None and time.monotonic() - self.seen_at > self.ttl:
            self._set_leader(None)  # the holder has stopped renewing: writes get 503, not a 307 to it
        if not self._may_lead(got[0] if got else None):
            return
        if got is None:
            await self._create()
            return
        lease, etag = got
        wait = self.ttl
        if self.settings.sync_replicas == 0 and self.service.position.seq < lease.commit_seq:
            wait += self.ttl  # let a caught-up peer win
        wait += random.uniform(0, self.ttl / 10)  # fewer races (each is safe: the swap decides)
        if lease.holder is not None and time.monotonic() - self.seen_at < wait:
            return
        self._renew_seq = max(self._renew_seq, lease.renew_seq) + 1
        body = Lease(holder=self.id, incarnation=self.incarnation, addr=self.advertise,
                     term=lease.term + 1, renew_seq=self._renew_seq, ttl_ms=int(self.ttl * 1000),
                     commit_seq=self.service.position.seq, isr=[self.id],
                     written_at_ms=int(time.time() * 1000))
        t_send = time.monotonic()
        try:
            new_etag = await self._call(self.store.swap(body, etag))
        except LeaseConflict:
            return
        log.info("took over the lease from %s (term %d)", lease.holder or "nobody", body.term)
        await self._become_leader(body, new_etag, t_send, lease.isr)

    async def _create(self) -> None:
        """No lease object: a new cluster (or a lost lease: never delete it). The first node
        to create it leads, in a term above any this node has seen."""
        pos = self.service.position
        term = max(self.term, pos.term) + 1
        if pos.seq:
            log.error("the lease object is missing while this node holds a log (at %d): it was "
                      "deleted? Creating it in term %d; a node with a longer log may hold "
                      "writes this one lacks", pos.seq, term)
        self._renew_seq += 1
        body = Lease(holder=self.id, incarnation=self.incarnation, addr=self.advertise,
                     term=term, renew_seq=self._renew_seq, ttl_ms=int(self.ttl * 1000),
                     isr=[self.id], commit_seq=pos.seq, written_at_ms=int(time.time() * 1000))
        t_send = time.monotonic()
        try:
            etag = await self._call(self.store.create(body))
        except LeaseConflict:
            return
        await self._become_leader(body, etag, t_send, [self.id])

    async def _become_leader(self, body: Lease, etag: str, t_send: float,
                             prev_isr: list[str]) -> None:
        """``t_send``: when the winning write was sent (-inf: not known; the gate then opens
        at the first renew). ``prev_isr``: the in-sync set before, written back if this node
        gives the lease up at once."""
        async with self.apply_lock:  # no follower apply after this
            self.lease, self.etag, self.term = body, etag, body.term
            if not self.stopping:
                self.role = "leader"
                try:
                    await self.service.begin_term(body.term)  # the marker before any write
                except TqdError as e:
                    log.error("cannot begin term %d: %s; giving the lease back", body.term, e.message)
                    self.role = "follower"
            if self.role != "leader" or self.stopping:  # (or SIGTERM came meanwhile)
                self.role = "follower"
                await self._release(prev_isr)
                return
        self.replicas.reset(body.isr)
        self.service.role = "leader"
        self._set_leader(self.advertise)
        self.service.sync_gate = self.replicas.wait if self.settings.sync_replicas else None
        self._open_gate(t_send)
        log.info("leader of term %d at %s", body.term, self.advertise)

    async def _step_down(self, got: tuple[Lease, str] | None) -> None:
        """Another node holds the lease: stop writing now, follow it."""
        self._close_gate()
        self.role = "follower"
        self.service.role = "follower"
        self.replicas.fail_all()
        self._observe(got)
        log.warning("lost the lease (now held by %s, term %s): following",
                    got[0].holder if got else "nobody", got[0].term if got else "?")

    def _close_gate(self) -> None:
        self.valid_until = 0.0
        self.service.write_gate_until = 0.0
        self.service.writer.set_gate(0)

    async def _hand_over(self) -> None:
        """Clean shutdown of the leader: no more writes, a moment for the followers to catch
        up, then the lease with no holder, so a follower takes over at its next poll. The
        lease lock is held throughout: no renew reopens the gate meanwhile."""
        async with self._lease_lock:
            self._close_gate()
            self.replicas.fail_all()
            deadline = time.monotonic() + min(2.0, self.ttl / 2)
            seq = self.service.position.seq
            while time.monotonic() < deadline and any(
                    f.acked < seq for f in self.replicas.followers.values()):
                await asyncio.sleep(0.02)
            await self._release_locked(None)
            self._close_gate()
            self.role = "follower"
            self.service.role = "follower"

    async def _release(self, isr: list[str] | None) -> None:
        async with self._lease_lock:
            await self._release_locked(isr)

    async def _release_locked(self, isr: list[str] | None) -> None:
        """Write the lease with no holder (``isr``: the in-sync set to leave; None: ours)."""
        if self.lease is None or self.etag is None:
            return
        body = self._body(holder=None) if isr is None else self._body(holder=None, isr=isr)
        try:
            await self._call(self.store.swap(body, self.etag))
            log.info("handed the lease over (term %d)", body.term)
        except (LeaseConflict, LeaseStoreError) as e:
            log.warning("could not hand the lease over (%s); a follower takes over after "
                        "the TTL", e)

    # ---- status ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        pos = self.service.position
        lease_age = time.monotonic() - self.seen_at
        return {"node": self.id, "role": self.role, "term": self.term,
                "leader": self.leader_url, "url": self.advertise, "applied_seq": pos.seq,
                "log_term": pos.term, "lease_age_s": round(lease_age, 3),
                "lease_store": self.store.description, "lease_store_ok": self.store_ok,
                "writable": self.leading, "sync_replicas": self.settings.sync_replicas,
                "isr": self.lease.isr if self.lease else [],
                "followers": self.replicas.status() if self.role == "leader" else [],
                "snapshots_restored": self.follower.snapshots,
                "loops": [st.as_dict() for st in self.service.loops.states.values()]}
