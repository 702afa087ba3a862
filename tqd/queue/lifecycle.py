"""The job lifecycle: how a job moves between states, and the ops of producers and workers.

``Rules`` holds what every op shares: how a job enters and leaves each state's index and
counter (the placement helpers; their callers write the state record), its error log, its
backoff, deleting it, and the record it is answered as. ``Lifecycle`` adds the ops of
producers and workers: enqueue, lease, ack, fail, heartbeat and release. Admin ops
(admin.py), timers (timers.py) build on the same ``Rules``; ``core.Core`` puts them together.

Everything here speaks to storage through ``ports.WriteTx``/``ReadView`` only.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from ..config import Settings
from ..errors import LeaseLost, NotFound, QueueFull
from ..protocol import NULL, STATES, EnqueueResult, ErrorEntry, ErrorEntryWire, JobRecord, LeasedJob
from . import ops
from . import records as r
from .ops import AckOutcome
from .ports import ReadView, WriteTx

_errors_enc = msgspec.msgpack.Encoder()
_errors_dec = msgspec.msgpack.Decoder(list[ErrorEntry])


_HEX18 = re.compile(r"[0-9a-f]{18}")


def ms(t: float) -> int:
    return int(t * 1000)


def _next_id(m: r.Meta, now_ms: int) -> str:
    """The next generated id: 12 hex digits of ms, 6 of a counter within that ms (sortable)."""
    if now_ms > m.id_ms:
        m.id_ms, m.id_n = now_ms, 0
    else:
        m.id_n += 1
    return f"{m.id_ms:012x}{m.id_n:06x}"



class Rules:
    """The transitions every op is made of, and the settings they follow."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings

    # ---- placement helpers (callers write the state record) --------------------

    def _make_ready(self, tx: WriteTx, qs: r.QStat, queue: str, prio: int, jid: str,
                    st: r.JobState, now: float) -> None:
        st.state, st.run_at, st.ready_seq = r.QUEUED, now, tx.next_seq()
        tx.ready_put(queue, prio, st.ready_seq, ms(now), jid)
        qs.by_prio[prio] += 1

    def _schedule(self, tx: WriteTx, qs: r.QStat, jid: str, st: r.JobState, run_at: float) -> None:
        st.state, st.run_at = r.SCHEDULED, run_at
        self._set_due(tx, jid, st, ms(run_at), r.DUE_READY)
        qs.scheduled += 1

    def _set_due(self, tx: WriteTx, jid: str, st: r.JobState, at_ms: int, kind: int) -> None:
        tx.due_put(at_ms, kind, jid)
        st.due_ms, st.due_kind = at_ms, kind

    def _claim_due(self, due: dict[int, list[str]], jid: str, st: r.JobState, at_ms: int,
                   kind: int) -> None:
        """Like _set_due, into a batch entry that _put_due writes once for the whole op."""
        due.setdefault(at_ms, []).append(jid)
        st.due_ms, st.due_kind = at_ms, kind | r.DUE_BATCH

    def _put_due(self, tx: WriteTx, due: dict[int, list[str]], kind: int) -> None:
        for at_ms, jids in due.items():
            tx.due_put_batch(at_ms, kind, jids)

    def _clear_due(self, tx: WriteTx, jid: str, st: r.JobState) -> None:
        if st.due_ms:
            if not st.due_kind & r.DUE_BATCH:  # a batch entry stays; it skips this job later
                tx.due_del(st.due_ms, st.due_kind, jid)
            st.due_ms = st.due_kind = 0

    def _leave(self, tx: WriteTx, qs: r.QStat, jid: str, spec: r.JobSpec, st: r.JobState) -> None:
        """Take a job out of the index and counter of its current state."""
        st.done_token = None  # it moves on: a repeat of the call that ended its lease is stale
        match st.state:
            case r.QUEUED:
                tx.ready_del(spec.queue, spec.priority, st.ready_seq)
                st.ready_seq = 0
                qs.by_prio[spec.priority] -= 1
            case r.SCHEDULED:
                self._clear_due(tx, jid, st)
                qs.scheduled -= 1
            case r.ACTIVE:
                self._clear_due(tx, jid, st)
                st.token = None
                st.lease_expires_at = None
                qs.active -= 1
            case r.DEAD:
                tx.index_del("dead", spec.queue, spec.qseq)
                qs.dead -= 1
            case r.COMPLETED:
                self._clear_due(tx, jid, st)
                qs.completed -= 1
            case r.CANCELLED:
                self._clear_due(tx, jid, st)
                qs.cancelled -= 1

    def _finish(self, tx: WriteTx, qs: r.QStat, jid: str, st: r.JobState, state: int, now: float,
                due: dict[int, list[str]] | None = None) -> None:
        """``due``: collect the retention entry into a batch (the caller writes it)."""
        st.state, st.finished_at = state, now
        tx.finished.append(jid)
        if state == r.COMPLETED:
            qs.completed += 1
        else:
            qs.cancelled += 1
        at = ms(now + self.s.retention_s)
        if due is None:
            self._set_due(tx, jid, st, at, r.DUE_PURGE)
        else:
            self._claim_due(due, jid, st, at, r.DUE_PURGE)

    def _to_dead(self, tx: WriteTx, qs: r.QStat, jid: str, spec: r.JobSpec, st: r.JobState,
                 now: float) -> None:
        st.state, st.finished_at = r.DEAD, now
        tx.finished.append(jid)
        tx.index_put("dead", spec.queue, spec.qseq, jid)
        qs.dead += 1

    def _add_error(self, tx: WriteTx, jid: str, st: r.JobState, entry: ErrorEntry) -> None:
        errs = self._errors(tx, jid, st)
        errs.append(entry)
        tx.put_extra(jid, b"e", _errors_enc.encode(errs[-self.s.max_errors_kept:]))
        st.extras |= r.HAS_ERRORS

    def _errors(self, tx: ReadView, jid: str, st: r.JobState) -> list[ErrorEntry]:
        if not st.extras & r.HAS_ERRORS:
            return []
        raw = tx.get_extra(jid, b"e")
        return _errors_dec.decode(raw) if raw else []

    def backoff(self, attempt: int, jitter: float) -> float:
        return float(min(self.s.backoff_base_s * 2.0 ** min(attempt, 60), self.s.backoff_max_s) * jitter)

    def _retry_or_dead(self, tx: WriteTx, qs: r.QStat, jid: str, spec: r.JobSpec, st: r.JobState,
                       now: float, delay: float | None) -> None:
        """After a failed attempt (st already out of 'active'): back off, or dead if spent."""
        qs.failed_total += 1
        if delay is None:
            self._to_dead(tx, qs, jid, spec, st, now)
        elif delay <= 0:
            self._make_ready(tx, qs, spec.queue, spec.priority, jid, st, now)
        else:
            self._schedule(tx, qs, jid, st, now + delay)

    # ---- finding and deleting ---------------------------------------------------

    def _load(self, tx: ReadView, jid: str) -> tuple[r.JobSpec, r.JobState]:
        spec, st = tx.get_spec(jid), tx.get_state(jid)
        if spec is None or st is None:
            raise NotFound(f"no job {jid}")
        return spec, st

    def _delete(self, tx: WriteTx, jid: str) -> None:
        spec, st = self._load(tx, jid)
        qs = tx.qstat(spec.queue)
        self._leave(tx, qs, jid, spec, st)
        tx.index_del("qidx", spec.queue, spec.qseq)
        if spec.key is not None and tx.key_get(spec.queue, spec.key) == jid:
            tx.key_del(spec.queue, spec.key)
        tx.delete_job(jid, st.extras)

    # ---- the record a job is answered as ------------------------------------------

    def record(self, tx: ReadView, jid: str, spec: r.JobSpec, st: r.JobState,
               cls: type[JobRecord] = JobRecord) -> Any:
        result = progress = None
        if st.extras & r.HAS_RESULT:
            raw = tx.get_extra(jid, b"r")
            result = msgspec.Raw(raw) if raw else None
        if st.extras & r.HAS_PROGRESS:
            raw = tx.get_extra(jid, b"p")
            progress = msgspec.Raw(raw) if raw else None
        errors = [ErrorEntryWire(e.attempt, e.at, e.error, e.details)
                  for e in self._errors(tx, jid, st)] if st.extras & r.HAS_ERRORS else []
        # positional, in JobRecord's field order (a keyword call costs more, per job leased)
        return cls(
            jid, spec.queue, spec.type, msgspec.Raw(spec.payload) if spec.payload else NULL,
            spec.priority, STATES[st.state], st.attempt, spec.max_attempts, spec.timeout,
            spec.key, errors, result, progress, spec.created_at, st.run_at, st.started_at,
            st.finished_at, st.lease_expires_at, st.worker, spec.trace,
        )


class Lifecycle(Rules):
    """The ops of producers and workers."""

    # ---- enqueue -------------------------------------------------------------

    def _new_id(self, tx: WriteTx, now: float) -> str:
        jid = _next_id(tx.meta, ms(now))
        if tx.meta.hexlike_ids and tx.get_state(jid) is not None:
            return self._new_id(tx, now)
        return jid

    def _existing(self, tx: WriteTx, jid: str | None, now: float) -> EnqueueResult | None:
        if jid is None:
            return None
        st = tx.get_state(jid)
        if st is None:
            return None
        if st.state in r.FINISHED and (st.finished_at or 0) + self.s.key_window_s <= now:
            return None
        return EnqueueResult(jid, STATES[st.state], False)

    def enqueue(self, tx: WriteTx, op: ops.Enqueue) -> list[EnqueueResult]:
        limit = self.s.queue_max_depth
        if limit:  # before any write: a refused enqueue changes nothing
            peek = tx.peek_qstat(op.queue)
            waiting = 0 if peek is None else peek.queued + peek.scheduled
            if waiting + len(op.jobs) > limit:
                raise QueueFull(f"queue {op.queue} holds {waiting} waiting jobs; at most "
                                f"{limit} (--queue-max-depth): enqueue again later",
                                depth=waiting, max_depth=limit)
        out: list[EnqueueResult] = []
        qs = tx.qstat(op.queue)
        now = op.now
        now_ms = ms(now)
        m = tx.meta
        fresh: list[tuple[str, r.JobSpec, r.JobState, int]] = []  # plain jobs, written together
        for nj in op.jobs:
            if nj.id is None and nj.key is None and (nj.run_at is None or nj.run_at <= now) \
                    and not m.hexlike_ids:
                # the common case, inlined: a generated id, ready now (same writes, same
                # sequence numbers as the general path below)
                jid = _next_id(m, now_ms)
                m.seq += 2
                fresh.append((jid, r.JobSpec(op.queue, nj.type, nj.payload, nj.priority,
                                             nj.max_attempts, nj.timeout, None, now, m.seq - 1,
                                             nj.trace),
                              r.JobState(r.QUEUED, 0, m.seq, run_at=now), nj.priority))
                qs.by_prio[nj.priority] += 1
                qs.enqueued_total += 1
                out.append(EnqueueResult(jid, "queued", True))
                continue
            if fresh:  # keep the order of writes: what follows may read them
                tx.put_fresh(op.queue, now_ms, fresh)
                fresh = []
            have = tx.get_state(nj.id) if nj.id is not None else None
            if have is not None:
                out.append(EnqueueResult(nj.id, STATES[have.state], False))  # type: ignore[arg-type]
                continue
            if nj.key is not None:
                found = self._existing(tx, tx.key_get(op.queue, nj.key), now)
                if found is not None:
                    out.append(found)
                    continue
            if nj.id is not None and len(nj.id) == 18 and _HEX18.fullmatch(nj.id):
                tx.meta.hexlike_ids = True
            jid = nj.id if nj.id is not None else self._new_id(tx, now)
            qseq = tx.next_seq()
            tx.put_spec(jid, r.JobSpec(op.queue, nj.type, nj.payload, nj.priority, nj.max_attempts,
                                       nj.timeout, nj.key, now, qseq, nj.trace))
            tx.index_put("qidx", op.queue, qseq, jid)
            if nj.key is not None:
                tx.key_put(op.queue, nj.key, jid)
            st = r.JobState(r.QUEUED)
            if nj.run_at is not None and nj.run_at > now:
                self._schedule(tx, qs, jid, st, nj.run_at)
            else:
                self._make_ready(tx, qs, op.queue, nj.priority, jid, st, now)
            tx.put_state(jid, st)
            qs.enqueued_total += 1
            out.append(EnqueueResult(jid, STATES[st.state], True))
        if fresh:
            tx.put_fresh(op.queue, now_ms, fresh)
        return out

    # ---- lease ---------------------------------------------------------------

    def lease(self, tx: WriteTx, op: ops.Lease) -> list[LeasedJob]:
        out: list[LeasedJob] = []
        due: dict[int, list[str]] = {}  # expiry ms -> ids: one due entry per group
        size, full = 0, False  # answer bytes so far; past op.max_bytes
        for queue in op.queues:
            peek = tx.peek_qstat(queue)
            if peek is None or peek.paused or peek.queued == 0:
                continue
            qs = tx.qstat(queue)
            for prio, jid in tx.ready_take(queue, op.max - len(out)):
                spec, st = tx.get_spec(jid), tx.get_state(jid)
                assert spec is not None and st is not None, f"ready entry without job {jid}"
                if full:  # taken past the bound: back where it was, same place in line
                    tx.ready_put(queue, prio, st.ready_seq, ms(st.run_at or op.now), jid)
                    continue
                qs.by_prio[prio] -= 1
                qs.active += 1
                expires = op.now + (op.timeout if op.timeout is not None else spec.timeout)
                st.state, st.ready_seq, st.done_token = r.ACTIVE, 0, None
                st.attempt += 1
                tx.waits.append((queue, op.now - (st.run_at or spec.created_at)))
                st.started_at, st.lease_expires_at, st.worker = op.now, expires, op.worker
                st.token = f"{tx.next_seq():x}.{op.salt:08x}"
                self._claim_due(due, jid, st, ms(expires), r.DUE_LEASE)
                tx.put_state(jid, st)
                rec = self.record(tx, jid, spec, st, cls=LeasedJob)
                rec.lease = st.token
                out.append(rec)
                if op.max_bytes:
                    size += _RECORD_ROOM + len(spec.payload) + _extras_size(rec)
                    full = size >= op.max_bytes
            if len(out) >= op.max or full:
                break
        self._put_due(tx, due, r.DUE_LEASE)
        return out

    def _held(self, tx: WriteTx, jid: str, lease: str, now: float) -> tuple[r.JobSpec, r.JobState]:
        """The job if `lease` is its live lease; else NotFound / LeaseLost (fencing)."""
        st = tx.get_state(jid)
        if st is None:
            raise NotFound(f"no job {jid}")
        if st.state != r.ACTIVE or st.token != lease or (st.lease_expires_at or 0) <= now:
            raise LeaseLost("this lease is no longer valid (expired, cancelled or finished)")
        spec = tx.get_spec(jid)
        assert spec is not None
        return spec, st

    def _ended_by(self, tx: WriteTx, jid: str, lease: str) -> r.JobState | None:
        """The job's state if `lease` is the token whose ack or fail ended the job's last lease
        and the job has not moved on since (see JobState.done_token); else None. Which call
        it was shows in the state: only an ack completes a job, and a completed job stays so."""
        st = tx.get_state(jid)
        return st if st is not None and st.done_token == lease else None

    # ---- finishing ---------------------------------------------------------------

    def ack(self, tx: WriteTx, op: ops.Ack) -> list[AckOutcome]:
        out = []
        due: dict[int, list[str]] = {}  # retention ends (ms) -> ids: one due entry per group
        for item in op.items:
            try:
                spec, st = self._held(tx, item.id, item.lease, op.now)
            except (NotFound, LeaseLost) as e:
                done = self._ended_by(tx, item.id, item.lease) if isinstance(e, LeaseLost) else None
                if done is not None and done.state == r.COMPLETED:
                    out.append(AckOutcome(item.id, None))  # a repeat: answered again, no write
                    continue
                if op.single:
                    raise
                out.append(AckOutcome(item.id, e.code))
                continue
            qs = tx.qstat(spec.queue)
            self._leave(tx, qs, item.id, spec, st)
            if item.result is not None and item.result != b"null":
                tx.put_extra(item.id, b"r", item.result)
                st.extras |= r.HAS_RESULT
            tx.runs.append((spec.queue, op.now - (st.started_at or op.now)))
            self._finish(tx, qs, item.id, st, r.COMPLETED, op.now, due)
            st.done_token = item.lease
            qs.completed_total += 1
            tx.put_state(item.id, st)
            out.append(AckOutcome(item.id, None))
        self._put_due(tx, due, r.DUE_PURGE)
        return out

    def fail(self, tx: WriteTx, op: ops.Fail) -> r.JobState:
        """A repeat of the fail that ended the job's last lease answers with the job's state
        now (scheduled, queued once due, or dead) and writes nothing."""
        try:
            spec, st = self._held(tx, op.id, op.lease, op.now)
        except LeaseLost:
            done = self._ended_by(tx, op.id, op.lease)
            if done is not None and done.state != r.COMPLETED:
                return done
            raise
        qs = tx.qstat(spec.queue)
        self._leave(tx, qs, op.id, spec, st)
        st.done_token = op.lease
        self._add_error(tx, op.id, st, ErrorEntry(st.attempt, op.now, op.error, op.details))
        delay = None
        if op.retry and st.attempt < spec.max_attempts:
            delay = op.retry_in if op.retry_in is not None else self.backoff(st.attempt, op.jitter)
        self._retry_or_dead(tx, qs, op.id, spec, st, op.now, delay)
        tx.put_state(op.id, st)
        return st

    def release(self, tx: WriteTx, op: ops.Release) -> r.JobState:
        """The holder hands the job back without running it (a worker stopping): it goes
        back to the queue (or waits `delay`), and that lease is not counted as an attempt."""
        spec, st = self._held(tx, op.id, op.lease, op.now)
        qs = tx.qstat(spec.queue)
        self._leave(tx, qs, op.id, spec, st)
        st.attempt = max(0, st.attempt - 1)
        if op.delay > 0:
            self._schedule(tx, qs, op.id, st, op.now + op.delay)
        else:
            self._make_ready(tx, qs, spec.queue, spec.priority, op.id, st, op.now)
        tx.put_state(op.id, st)
        return st

    def heartbeat(self, tx: WriteTx, op: ops.Heartbeat) -> float:
        spec, st = self._held(tx, op.id, op.lease, op.now)
        expires = op.now + (op.extend if op.extend is not None else spec.timeout)
        st.lease_expires_at = expires
        if ms(expires) < st.due_ms:  # shortened: the expiry check must come sooner
            self._clear_due(tx, op.id, st)
            self._set_due(tx, op.id, st, ms(expires), r.DUE_LEASE)
        # lengthened: the due entry stays; the tick moves it (one write per lease, not per beat)
        if op.progress is not None:
            tx.put_extra(op.id, b"p", op.progress)
            st.extras |= r.HAS_PROGRESS
        tx.put_state(op.id, st)
        return expires


_RECORD_ROOM = 400  # a leased record's JSON beyond its payload, result, progress and errors


def _extras_size(rec: JobRecord) -> int:
    """Bytes of a record's result, progress and error log (usually none)."""
    n = 0
    if rec.result is not None:
        n += len(rec.result)
    if rec.progress is not None:
        n += len(rec.progress)
    for e in rec.errors:
        n += 64 + len(e.error) + len(e.details or "")
    return n
