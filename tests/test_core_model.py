"""A Hypothesis state machine over the queue core against a plain in-memory model.

The system under test is the real thing minus HTTP: a Store on LMDB in a temp
dir, the Core, and the Writer applying one op per committed transaction
(`apply_now`). Time is a float that a rule advances; every op carries it, as
in the server. The reference model (tests/_model_ref.py) is dicts and lists.

After every step the invariants compare, job by job and queue by queue, what
the core stores with what the model says, and look inside the LMDB indexes:
each job sits in exactly the index its state calls for (ready, due, dead),
ready order is priority then FIFO, counters match, and the writer's cached
counters equal the stored ones. Rules also close and reopen the store (state
must be identical) and replay the replication log into a fresh store (the ops
are deterministic, so the replay must give byte-identical databases).
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import msgspec
import pytest
from _model_ref import FINISHED, MCfg, MJob, MNew, Model, ms
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tqd.config import Settings
from tqd.engine.writer import Writer
from tqd.errors import TqdError
from tqd.protocol import STATES
from tqd.queue import ops
from tqd.queue import records as r
from tqd.queue.core import Core
from tqd.storage.log import REPLICATED, Position
from tqd.storage.store import Store

QUEUES = ("a", "b", "c")
T0 = 1_700_000_000.0
MAP_SIZE = 32 * 1024 * 1024
SETTINGS = Settings(lease_timeout_s=10.0, max_attempts=3, backoff_base_s=1.0, backoff_max_s=8.0,
                    retention_s=25.0, key_window_s=5.0, max_errors_kept=2,
                    log_keep_entries=1_000_000, max_batch_ops=100)
CFG = MCfg(SETTINGS.lease_timeout_s, SETTINGS.backoff_base_s, SETTINGS.backoff_max_s,
           SETTINGS.retention_s, SETTINGS.key_window_s, SETTINGS.max_errors_kept)
_U64 = struct.Struct(">Q")

new_jobs = st.builds(
    MNew,
    id=st.one_of(*[st.none()] * 5, st.sampled_from(["c1", "c2", "c3", "c4"])),
    type=st.sampled_from([None, "email"]),
    payload=st.sampled_from([b"null", b'{"n":1}', b"[1,2]"]),
    priority=st.sampled_from([0, 3, 5, 5, 5, 7, 9]),
    run_at=st.sampled_from([None, None, None, -3.0, 0.0, 0.5, 2.0, 7.5, 40.0]),  # offsets from now
    max_attempts=st.integers(1, 5),
    timeout=st.sampled_from([5.0, 10.0]),
    key=st.one_of(st.none(), st.none(), st.sampled_from(["k1", "k2"])),
)
QUEUE_LISTS = st.lists(st.sampled_from(QUEUES), min_size=1, max_size=3, unique=True)
WORKERS = st.sampled_from([None, "w1", "w2"])
LEASE_TIMEOUTS = st.sampled_from([None, None, 3.0, 15.0])
SALTS = st.integers(0, 2**32 - 1)
RESULTS = st.sampled_from([None, b"null", b'{"ok":1}'])
FAIL_ARGS = st.tuples(  # error, details, retry, retry_in, jitter
    st.sampled_from(["boom", "oops"]), st.sampled_from([None, "Traceback ..."]),
    st.sampled_from([True, True, False]), st.sampled_from([None, None, 0.0, 2.5]),
    st.sampled_from([1.0, 1.0, 0.75, 1.25]))
HEARTBEAT_ARGS = st.tuples(st.sampled_from([None, 0.5, 2.0, 30.0]),  # extend, progress
                           st.sampled_from([None, b'{"pct":50}']))


def open_store(path: Path) -> tuple[Store, Writer]:
    store = Store(path, MAP_SIZE)
    writer = Writer(store, Core(SETTINGS), max_batch_ops=SETTINGS.max_batch_ops,
                    log_keep_entries=SETTINGS.log_keep_entries)
    return store, writer


def dump(store: Store) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every key and value of every sub-database."""
    with store.env.begin() as t:
        return {name: [(bytes(k), bytes(v)) for k, v in t.cursor(db=db)]
                for name, db in store.dbs.items()}


def replicated(store: Store) -> dict[str, list[tuple[bytes, bytes]]]:
    """The replicated sub-databases, key by key (what a follower must match byte for byte)."""
    return {name: rows for name, rows in dump(store).items() if name in REPLICATED}


def _split_q(k: bytes) -> tuple[str, bytes]:
    q, _, rest = k.partition(b"\x00")
    return q.decode(), rest


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="tqd-model-"))
        self.store, self.writer = open_store(self.dir / "data")
        self.core = self.writer.core
        self.model = Model(CFG, T0)
        self.snap: tuple[Path, Position] | None = None  # the last snapshot (dir, position)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def now(self) -> float:
        return self.model.now

    def apply(self, op: ops.Op) -> tuple[Any, str | None]:
        """(result, None) or (None, error code)."""
        try:
            return self.writer.apply_now(op), None
        except TqdError as e:
            return None, e.code

    def record(self, jid: str) -> Any:
        with self.store.read() as t:
            return self.core.get(t, jid)

    def pick_lease(self, data: st.DataObject) -> tuple[str, str]:
        """A (job id, token): the live lease of an active job, an old one, a wrong one, or
        an id that does not exist."""
        m = self.model
        live = [(j.id, j.token) for j in m.jobs.values() if j.state == "active" and j.token]
        kinds = ["wrong", "missing"] + (["stale"] * 2 if m.issued else []) + (["live"] * 8 if live else [])
        kind = data.draw(st.sampled_from(kinds), label="lease kind")
        if kind == "live":
            jid, tok = data.draw(st.sampled_from(live), label="live lease")
            return jid, str(tok)
        if kind == "stale":
            return data.draw(st.sampled_from(m.issued), label="old lease")
        if kind == "wrong" and m.jobs:
            return data.draw(st.sampled_from(sorted(m.jobs)), label="job"), "1.deadbeef"
        return "nope", "1.deadbeef"

    def pick_job(self, data: st.DataObject) -> str:
        if not self.model.jobs or data.draw(st.integers(0, 9), label="missing?") == 0:
            return "nope"
        return data.draw(st.sampled_from(sorted(self.model.jobs)), label="job id")

    # ---- rules -------------------------------------------------------------------

    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        """Begin with a few jobs so that the other rules have something to work on."""
        self.check_everything()
        for q in data.draw(st.lists(st.sampled_from(QUEUES), min_size=1, max_size=4), label="seed queues"):
            self.enqueue(data, q, True)

    @rule(data=st.data(), queue=st.sampled_from(QUEUES), bulk=st.booleans())
    def enqueue(self, data: st.DataObject, queue: str, bulk: bool,
                lines: list[MNew] | None = None) -> None:
        if lines is None:
            lines = data.draw(st.lists(new_jobs, min_size=1, max_size=6 if bulk else 1), label="jobs")
        for nj in lines:  # run_at was drawn as an offset from now
            nj.run_at = None if nj.run_at is None else self.now + nj.run_at
        op = ops.Enqueue(self.now, queue, [
            ops.NewJob(nj.id, nj.type, nj.payload, nj.priority, nj.run_at, nj.max_attempts, nj.timeout,
                     nj.key) for nj in lines])
        res, err = self.apply(op)
        assert err is None, err
        got = [(x.id, x.state, x.created) for x in res]
        assert got == self.model.enqueue(queue, lines, got)
        if not all(x.created for x in res):
            event("enqueue: existing job (key or id)")

    @rule(data=st.data(), line=new_jobs, by_id=st.booleans())
    def enqueue_again(self, data: st.DataObject, line: MNew, by_id: bool) -> None:
        """Enqueue with the key (or id) of a job that exists, whatever its state."""
        keyed = [j for j in self.model.jobs.values() if j.key is not None]
        if by_id and self.model.jobs:
            line.id = data.draw(st.sampled_from(sorted(self.model.jobs)))
            queue = data.draw(st.sampled_from(QUEUES))  # ids are unique across queues
        elif keyed:
            old = data.draw(st.sampled_from(keyed))
            line.id, line.key, queue = None, old.key, old.queue
        else:
            return
        self.enqueue(data, queue, False, [line])

    def do_lease(self, queues: list[str], max_n: int, worker: str | None, timeout: float | None,
                 salt: int) -> list[Any]:
        expect = self.model.lease_expect(queues, max_n)
        max_bytes = (0, 1, 900, 2000)[salt % 4]  # 0: no bound
        res, err = self.apply(ops.Lease(self.now, queues, max_n, worker, timeout, salt, max_bytes))
        assert err is None, err
        # a byte bound may cut the answer short: a prefix, never empty when jobs are ready
        got = [j.id for j in res]
        assert got == expect[:len(got)], "lease order (priority, then FIFO by ready time)"
        assert len(got) == len(expect) or (max_bytes and got), (got, expect, max_bytes)
        if max_bytes == 1 and expect:  # the first job alone is past the bound
            assert len(got) == 1, got
        event(f"lease: {min(len(res), 2)}{'+' if len(res) >= 2 else ''} jobs")
        for j in res:
            assert j.state == "active" and j.lease, j
            self.model.lease_apply(j.id, j.lease, timeout, worker)
            assert j.attempt == self.model.jobs[j.id].attempt
            assert j.lease_expires_at == self.model.jobs[j.id].lease_expires_at
        return res  # type: ignore[no-any-return]

    def do_ack(self, picks: list[tuple[str, str]], bulk: bool, result: bytes | None) -> None:
        items = [ops.AckItem(jid, tok, result) for jid, tok in picks]
        res, err = self.apply(ops.Ack(self.now, items, not bulk))
        expect = [self.model.ack(jid, tok, result) for jid, tok in picks]
        for e in expect:
            event(f"ack: {e or 'ok'}")
        if bulk:
            assert err is None, err
            assert [(o.id, o.error) for o in res] == [(jid, e) for (jid, _), e in zip(picks, expect, strict=True)]
        else:
            assert err == expect[0]

    def do_fail(self, jid: str, tok: str, error: str, details: str | None, retry: bool,
                retry_in: float | None, jitter: float) -> None:
        res, err = self.apply(ops.Fail(self.now, jid, tok, error, details, retry, retry_in, jitter))
        expect = self.model.fail(jid, tok, error, details, retry, retry_in, jitter)
        event(f"fail: {expect if isinstance(expect, str) else expect[0]}")
        if isinstance(expect, str):
            assert err == expect
        else:
            assert err is None, err
            assert (STATES[res.state], res.run_at) == expect

    def do_release(self, jid: str, tok: str, delay: float) -> None:
        res, err = self.apply(ops.Release(self.now, jid, tok, delay))
        expect = self.model.release(jid, tok, delay)
        event(f"release: {expect if isinstance(expect, str) else expect[0]}")
        if isinstance(expect, str):
            assert err == expect
        else:
            assert err is None, err
            assert (STATES[res.state], res.run_at) == expect

    def do_heartbeat(self, jid: str, tok: str, extend: float | None, progress: bytes | None) -> None:
        res, err = self.apply(ops.Heartbeat(self.now, jid, tok, extend, progress))
        expect = self.model.heartbeat(jid, tok, extend, progress)
        event(f"heartbeat: {expect if isinstance(expect, str) else 'ok'}")
        if isinstance(expect, str):
            assert err == expect
        else:
            assert (res, err) == (expect, None)

    @rule(data=st.data(), queues=QUEUE_LISTS, max_n=st.integers(1, 4), worker=WORKERS,
          timeout=LEASE_TIMEOUTS, salt=SALTS)
    def lease(self, data: st.DataObject, queues: list[str], max_n: int, worker: str | None,
              timeout: float | None, salt: int) -> None:
        self.do_lease(queues, max_n, worker, timeout, salt)

    @rule(data=st.data(), queues=QUEUE_LISTS, max_n=st.integers(1, 4), worker=WORKERS,
          timeout=LEASE_TIMEOUTS, salt=SALTS)
    def work(self, data: st.DataObject, queues: list[str], max_n: int, worker: str | None,
             timeout: float | None, salt: int) -> None:
        """A worker's turn: lease, then ack, fail, heartbeat or keep each job."""
        for j in self.do_lease(queues, max_n, worker, timeout, salt):
            action = data.draw(st.sampled_from(["ack", "fail", "fail", "heartbeat", "release",
                                                "keep"]))
            if action == "ack":
                self.do_ack([(j.id, j.lease)], data.draw(st.booleans()), data.draw(RESULTS))
            elif action == "fail":
                self.do_fail(j.id, j.lease, *data.draw(FAIL_ARGS))
            elif action == "heartbeat":
                self.do_heartbeat(j.id, j.lease, *data.draw(HEARTBEAT_ARGS))
            elif action == "release":
                self.do_release(j.id, j.lease, data.draw(st.sampled_from([0.0, 0.0, 3.0])))

    @rule(data=st.data(), bulk=st.booleans(), result=RESULTS)
    def ack(self, data: st.DataObject, bulk: bool, result: bytes | None) -> None:
        picks = [self.pick_lease(data) for _ in range(data.draw(st.integers(1, 3)) if bulk else 1)]
        self.do_ack(picks, bulk, result)

    @rule(data=st.data(), args=FAIL_ARGS)
    def fail(self, data: st.DataObject, args: tuple[Any, ...]) -> None:
        self.do_fail(*self.pick_lease(data), *args)

    @rule(data=st.data(), same_call=st.sampled_from([True, True, True, False]), bulk=st.booleans(),
          result=RESULTS, args=FAIL_ARGS)
    def repeat(self, data: st.DataObject, same_call: bool, bulk: bool, result: bytes | None,
               args: tuple[Any, ...]) -> None:
        """A client sends again an ack or fail that ended a lease (its answer was lost), or
        the other call with that token: one of the latest few, however things went since."""
        if not self.model.endings:
            return
        jid, tok, call = data.draw(st.sampled_from(self.model.endings[-3:]), label="ending")
        before = dump(self.store)
        if (call == "ack") == same_call:
            self.do_ack([(jid, tok)], bulk, result)
        else:
            self.do_fail(jid, tok, *args)
        assert dump(self.store) == before, "a repeated (or refused) call wrote something"

    @rule(data=st.data(), delay=st.sampled_from([0.0, 2.5]))
    def release(self, data: st.DataObject, delay: float) -> None:
        self.do_release(*self.pick_lease(data), delay)

    @rule(data=st.data(), args=HEARTBEAT_ARGS)
    def heartbeat(self, data: st.DataObject, args: tuple[Any, ...]) -> None:
        self.do_heartbeat(*self.pick_lease(data), *args)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        jid = self.pick_job(data)
        _, err = self.apply(ops.Cancel(self.now, jid))
        assert err == self.model.cancel(jid)
        event(f"cancel: {err or 'ok'}")

    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        jid = self.pick_job(data)
        _, err = self.apply(ops.Retry(self.now, jid))
        assert err == self.model.retry(jid)
        event(f"retry: {err or 'ok'}")

    @rule(queue=st.sampled_from(QUEUES), limit=st.integers(1, 3))
    def redrive(self, queue: str, limit: int) -> None:
        res, err = self.apply(ops.Redrive(self.now, queue, limit))
        assert (res, err) == (self.model.redrive(queue, limit), None)
        event(f"redrive: {'moved' if res else 'none'}")

    @rule(queue=st.sampled_from(QUEUES), state=st.sampled_from(["dead", "completed", "cancelled"]),
          limit=st.integers(1, 3), scan=st.integers(0, 4))
    def purge(self, queue: str, state: str, limit: int, scan: int) -> None:
        """Steps as the service takes them (cursor in, cursor out) until the core says done:
        it must get there, and together the steps delete what the model's purge does."""
        deleted, cursor, steps = 0, 0, 0
        while cursor is not None:
            steps += 1
            assert steps <= 10_000, "purge never finishes"
            res, err = self.apply(ops.Purge(self.now, queue, STATES.index(state), limit, cursor, scan))
            assert err is None, err
            n, nxt = res
            assert 0 <= n <= limit
            assert nxt is None or nxt > cursor, "purge cursor did not move"
            deleted, cursor = deleted + n, nxt
        assert deleted == self.model.purge(queue, state)
        event(f"purge {state}: {'deleted' if deleted else 'none'} in {min(steps, 3)}+ steps")

    @rule(queue=st.sampled_from(QUEUES), force=st.booleans(), limit=st.integers(1, 3))
    def delete_queue(self, queue: str, force: bool, limit: int) -> None:
        """As the service does it: with force, purge every state in steps, then delete."""
        purged, cursor = 0, 0 if force else None
        while cursor is not None:
            res, err = self.apply(ops.Purge(self.now, queue, r.ANY_STATE, limit, cursor, limit))
            assert err is None, err
            purged, cursor = purged + res[0], res[1]
        _, err = self.apply(ops.DeleteQueue(self.now, queue))
        want_purged, want_err = self.model.delete_queue(queue, force)
        assert purged == want_purged
        assert err == want_err or (want_err is None and err == "not_found"), (err, want_err)
        event(f"delete queue: {err or 'ok'}{' (force)' if force else ''}")

    @rule(queue=st.sampled_from(QUEUES), paused=st.booleans())
    def set_paused(self, queue: str, paused: bool) -> None:
        res, err = self.apply(ops.SetPaused(self.now, queue, paused))
        assert err is None, err
        self.model.set_paused(queue, paused)

    @rule(dt=st.sampled_from([0.25, 1.0, 2.5, 4.0, 6.0, 12.0, 20.0, 45.0]),
          tick=st.sampled_from([True, True, True, False]),
          limit=st.integers(1, 4))
    def advance(self, dt: float, tick: bool, limit: int) -> None:
        """Time passes; usually the timer acts on it (in chunks of `limit` due entries)."""
        self.model.now += dt
        if tick:
            self.tick(limit)

    @rule(limit=st.integers(1, 4))
    def tick(self, limit: int) -> None:
        for _ in range(10_000):
            taken, err = self.apply(ops.Tick(self.now, limit))
            assert err is None, err
            if taken < limit:
                break
        before = {j.id: j.state for j in self.model.jobs.values()}
        self.model.tick(lambda jid: self.record(jid).run_at)
        for jid, was in before.items():
            now = self.model.jobs[jid].state if jid in self.model.jobs else "deleted"
            if now != was:
                event(f"tick: {was} -> {now}")

    @rule()
    def reopen(self) -> None:
        """Close the store and open it again: nothing changes, caches included."""
        before, meta, qstats = dump(self.store), self.writer.meta, dict(self.writer.qstats)
        local = self.writer.local
        self.store.close()
        self.store, self.writer = open_store(self.dir / "data")
        self.core = self.writer.core
        assert dump(self.store) == before
        assert self.writer.meta == meta and self.writer.local == local
        assert self.writer.qstats == qstats

    @rule()
    def snapshot(self) -> None:
        """Take a snapshot now; replay_log later checks it plus the log after it."""
        if self.snap is not None:
            shutil.rmtree(self.snap[0], ignore_errors=True)
        dest = Path(tempfile.mkdtemp(prefix="tqd-snap-", dir=self.dir)) / "lmdb"
        pos = self.store.snapshot(dest)
        assert pos == self.writer.position
        self.snap = (dest.parent, pos)

    @rule()
    def replay_log(self) -> None:
        """A follower fed the leader's log ends byte-identical in every replicated
        sub-database, without running the rules: from an empty store, and from the last
        snapshot plus the log after it. The follower is a bare Store; no setting of the
        leader's (retention, key window, backoff, errors kept) can reach it."""
        with self.store.read() as t:
            entries = t.log_entries(0, 1 << 30)
        assert [seq for seq, _ in entries] == list(range(1, len(entries) + 1)), "log has gaps"
        want = replicated(self.store)
        path = Path(tempfile.mkdtemp(prefix="tqd-replay-", dir=self.dir))
        follower = Store(path, MAP_SIZE)
        try:
            for i in range(0, len(entries), 7):  # in batches, as fetched
                follower.apply_entries([raw for _, raw in entries[i:i + 7]], 1 << 30, 1 << 40)
            assert follower.position() == self.writer.position
            assert replicated(follower) == want
        finally:
            follower.close()
        if self.snap is not None:
            snap_dir, pos = self.snap
            copy = Path(tempfile.mkdtemp(prefix="tqd-restore-", dir=self.dir)) / "data"
            shutil.copytree(snap_dir, copy)  # the snapshot stays as taken, for later replays
            follower = Store(copy, MAP_SIZE)
            try:
                assert follower.position() == pos
                follower.apply_entries([raw for seq, raw in entries if seq > pos.seq], 1 << 30, 1 << 40)
                assert replicated(follower) == want
            finally:
                follower.close()

    # ---- invariants ----------------------------------------------------------------

    @invariant()
    def check_everything(self) -> None:
        m = self.model
        for note in m.notes:
            event(note)
        m.notes.clear()
        d = dump(self.store)
        with self.store.read() as t:
            stored_ids = {bytes(k).decode() for k, _ in d["state"]}
            assert stored_ids == set(m.jobs), "jobs in the store vs the model"
            assert {bytes(k).decode() for k, _ in d["spec"]} == stored_ids
            for j in m.jobs.values():
                self.check_job(self.core.get(t, j.id), j)
            for q in QUEUES:
                qs = t.get_qstat(q) or r.QStat()
                c = m.counts(q)
                got = dict(queued=qs.queued, by_prio=qs.by_prio, scheduled=qs.scheduled,
                           active=qs.active, dead=qs.dead, completed=qs.completed,
                           cancelled=qs.cancelled, paused=qs.paused, enqueued_total=qs.enqueued_total,
                           completed_total=qs.completed_total, failed_total=qs.failed_total)
                assert got == c, f"queue {q} stats"
                oldest = [j.ready_ms for j in m.jobs.values() if j.queue == q and j.state == "queued"]
                assert t.oldest_ready_ms(q) == (min(oldest) if oldest else None)
            committed = dict(t.all_qstats())
        assert self.writer.qstats == committed, "writer's cached counters differ from the store"
        stored_meta = msgspec.msgpack.decode(d["meta"][0][1], type=r.Meta) if d["meta"] else r.Meta()
        assert self.writer.meta == stored_meta, "writer's cached meta differs from the store"
        self.check_indexes(d)

    def check_job(self, rec: Any, j: MJob) -> None:
        want = dict(id=j.id, queue=j.queue, type=j.type, payload=j.payload, priority=j.priority,
                    state=j.state, attempt=j.attempt, max_attempts=j.max_attempts, timeout=j.timeout,
                    key=j.key, created_at=j.created_at, run_at=j.run_at, started_at=j.started_at,
                    finished_at=j.finished_at, lease_expires_at=j.lease_expires_at, worker=j.worker,
                    result=j.result, progress=j.progress,
                    errors=[(e[0], e[1], e[2], e[3]) for e in j.errors])
        got = dict(id=rec.id, queue=rec.queue, type=rec.type, payload=bytes(rec.payload),
                   priority=rec.priority, state=rec.state, attempt=rec.attempt,
                   max_attempts=rec.max_attempts, timeout=rec.timeout, key=rec.key,
                   created_at=rec.created_at, run_at=rec.run_at, started_at=rec.started_at,
                   finished_at=rec.finished_at, lease_expires_at=rec.lease_expires_at,
                   worker=rec.worker, result=None if rec.result is None else bytes(rec.result),
                   progress=None if rec.progress is None else bytes(rec.progress),
                   errors=[(e.attempt, e.at, e.error, e.details) for e in rec.errors])
        assert got == want, f"job {j.id}"

    def check_due(self, d: dict[str, list[tuple[bytes, bytes]]]) -> None:
        m = self.model
        # due: scheduled -> when it runs; active -> at or before its lease expiry;
        # completed/cancelled -> when retention ends; queued and dead -> none. A job's state
        # claims its entry (due_ms, due_kind): a per-job entry, or a batch entry (kind has
        # DUE_BATCH) listing it. Per-job entries are exact (one per claiming job, no other);
        # batch entries may list jobs that left them (skipped when the entry fires).
        claims = {k.decode(): (js.due_ms, js.due_kind)
                  for k, v in d["state"] for js in [msgspec.msgpack.decode(v, type=r.JobState)]
                  if js.due_ms}
        single: dict[str, tuple[int, int]] = {}
        batched: set[tuple[str, int, int]] = set()
        for k, v in d["due"]:
            at_ms, kind = struct.unpack_from(">QB", k)
            if kind & r.DUE_BATCH:
                batched.update((j.decode(), at_ms, kind) for j in v.split(b"\x00"))
                continue
            jid = k[9:].decode()
            assert jid not in single, f"{jid} has two due entries"
            assert claims.get(jid) == (at_ms, kind), f"per-job due entry not claimed: {jid}"
            single[jid] = (at_ms, kind)
        for jid, (at_ms, kind) in claims.items():
            assert jid in m.jobs, f"state of a job that does not exist: {jid}"
            if kind & r.DUE_BATCH:
                assert (jid, at_ms, kind) in batched, f"{jid} claims a batch entry that is gone"
        for j in m.jobs.values():
            c = claims.get(j.id)
            got = None if c is None else (c[0], c[1] & ~r.DUE_BATCH)
            if j.state == "scheduled":
                assert got == (ms(j.run_at or 0), r.DUE_READY), (j.id, got)
            elif j.state == "active":
                assert got is not None and got[1] == r.DUE_LEASE, (j.id, got)
                assert got[0] <= ms(j.lease_expires_at or 0), (j.id, got, j.lease_expires_at)
            elif j.state in FINISHED:
                assert got == (ms((j.finished_at or 0) + SETTINGS.retention_s), r.DUE_PURGE), (j.id, got)
            else:
                assert got is None, (j.id, j.state, got)

    def check_indexes(self, d: dict[str, list[tuple[bytes, bytes]]]) -> None:
        """Each job is in exactly the indexes its state calls for, and nowhere else."""
        m = self.model
        # ready: one entry per queued job, in lease order, with the right priority
        ready: dict[str, list[str]] = {}
        for k, v in d["ready"]:
            q, rest = _split_q(k)
            jid = v[8:].decode()
            assert rest[0] == 9 - m.jobs[jid].priority, f"{jid} under the wrong priority"
            assert _U64.unpack(v[:8])[0] == m.jobs[jid].ready_ms
            ready.setdefault(q, []).append(jid)
        for q in QUEUES:
            assert ready.pop(q, []) == m.ready_order(q), f"ready index of {q}"
        assert not ready, f"ready entries for unknown queues {ready}"
        self.check_due(d)
        # listing (every job once, enqueue order) and dead (dead jobs, enqueue order)
        for which, pick in (("qidx", lambda j: True), ("dead", lambda j: j.state == "dead")):
            per_q: dict[str, list[str]] = {}
            for k, v in d[which]:
                q, _ = _split_q(k)
                per_q.setdefault(q, []).append(v.decode())
            for q in QUEUES:
                want = [j.id for j in m.jobs.values() if j.queue == q and pick(j)]
                assert per_q.pop(q, []) == want, f"{which} index of {q}"
            assert not per_q, f"{which} entries for unknown queues"
        # idempotency keys
        keys = {}
        for k, v in d["keys"]:
            q, key = _split_q(k)
            keys[(q, key.decode())] = v.decode()
        assert keys == m.keys, "idempotency keys"
        # extras exist only for jobs that exist
        for k, _ in d["extra"]:
            assert k.partition(b"\x00")[0].decode() in m.jobs, f"extra entry {k!r} of a deleted job"


CoreMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# a failure shrinks for a while (each example is a few hundred LMDB commits): give it room
TestCoreModel = pytest.mark.timeout(600)(CoreMachine.TestCase)
