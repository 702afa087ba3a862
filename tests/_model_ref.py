"""A plain in-memory reference model of the queue core, for test_core_model.

It knows nothing of LMDB or of tqd's code: dicts and lists that follow
PROTOCOL.md's rules. Each operation returns what the core must answer; the
state machine compares. Three things the model takes from the core instead
of predicting them (and checks instead): generated job ids (fresh, and
increasing in enqueue order), lease tokens (never seen before) and the
jittered run_at of a job whose lease expired (within [0.75, 1.25] of the
documented backoff).

A repeated ack or fail (the very token and call that ended the job's last
lease) answers as the first did and changes nothing, until the job moves on:
leased again, cancelled, retried or redriven (a delayed retry becoming due
is not moving on; the repeated fail then tells the job's state now).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

NOT_FOUND, LEASE_LOST, INVALID_STATE = "not_found", "lease_lost", "invalid_state"
FINISHED = ("completed", "cancelled")


def ms(t: float) -> int:
    """Times on the due index have millisecond resolution (truncated)."""
    return int(t * 1000)


@dataclass
class MCfg:
    lease_timeout_s: float
    backoff_base_s: float
    backoff_max_s: float
    retention_s: float
    key_window_s: float
    max_errors_kept: int


@dataclass
class MNew:
    """One job to enqueue (the model's twin of records.NewJob)."""

    id: str | None
    type: str | None
    payload: bytes
    priority: int
    run_at: float | None
    max_attempts: int
    timeout: float
    key: str | None


@dataclass
class MJob:
    id: str
    queue: str
    type: str | None
    payload: bytes
    priority: int
    max_attempts: int
    timeout: float
    key: str | None
    created_at: float
    state: str = "queued"
    attempt: int = 0
    run_at: float | None = None
    ready_order: int = 0  # FIFO position inside its priority while queued
    ready_ms: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    lease_expires_at: float | None = None
    token: str | None = None
    worker: str | None = None
    errors: list[tuple[int, float, str, str | None]] = field(default_factory=list)
    result: bytes | None = None
    progress: bytes | None = None
    ended_by: tuple[str, str] | None = None  # (token, "ack" | "fail") that ended the last lease


@dataclass
class MQueue:
    paused: bool = False
    enqueued_total: int = 0
    completed_total: int = 0
    failed_total: int = 0


class Model:
    def __init__(self, cfg: MCfg, now: float) -> None:
        self.cfg = cfg
        self.now = now
        self.jobs: dict[str, MJob] = {}  # insertion order = enqueue order
        self.keys: dict[tuple[str, str], str] = {}
        self.queues: dict[str, MQueue] = {}
        self.issued: list[tuple[str, str]] = []  # every (id, token) ever handed out
        self.endings: list[tuple[str, str, str]] = []  # every (id, token, call) that ended a lease
        self._tokens: set[str] = set()
        self._ready_counter = 0
        self._last_generated: str | None = None
        self.notes: list[str] = []  # rare paths taken (the test reports them as events)

    # ---- helpers ---------------------------------------------------------------

    def q(self, name: str) -> MQueue:
        return self.queues.setdefault(name, MQueue())

    def backoff(self, attempt: int) -> float:
        return float(min(self.cfg.backoff_base_s * 2.0 ** min(attempt, 60), self.cfg.backoff_max_s))

    def _make_ready(self, j: MJob) -> None:
        self._ready_counter += 1
        j.state, j.run_at, j.ready_order, j.ready_ms = "queued", self.now, self._ready_counter, ms(self.now)

    def _schedule(self, j: MJob, run_at: float) -> None:
        j.state, j.run_at = "scheduled", run_at

    def _leave_active(self, j: MJob) -> None:
        j.token = None
        j.lease_expires_at = None

    def _add_error(self, j: MJob, error: str, details: str | None) -> None:
        j.errors.append((j.attempt, self.now, error, details))
        if len(j.errors) > self.cfg.max_errors_kept:
            self.notes.append("errors list trimmed")
        del j.errors[: -self.cfg.max_errors_kept]

    def _delete(self, jid: str) -> None:
        j = self.jobs.pop(jid)
        if j.key is not None and self.keys.get((j.queue, j.key)) == jid:
            del self.keys[(j.queue, j.key)]

    def ready_order(self, queue: str) -> list[str]:
        """Queued jobs of a queue in the order they must be leased."""
        js = [j for j in self.jobs.values() if j.queue == queue and j.state == "queued"]
        return [j.id for j in sorted(js, key=lambda j: (-j.priority, j.ready_order))]

    def in_queue(self, queue: str) -> list[MJob]:
        return [j for j in self.jobs.values() if j.queue == queue]

    def counts(self, queue: str) -> dict[str, object]:
        js = self.in_queue(queue)
        by_prio = [0] * 10
        for j in js:
            if j.state == "queued":
                by_prio[j.priority] += 1
        qs = self.queues.get(queue, MQueue())
        out: dict[str, object] = {s: sum(1 for j in js if j.state == s)
                                  for s in ("scheduled", "active", "dead", "completed", "cancelled")}
        out.update(queued=sum(by_prio), by_prio=by_prio, paused=qs.paused,
                   enqueued_total=qs.enqueued_total, completed_total=qs.completed_total,
                   failed_total=qs.failed_total)
        return out

    def held(self, jid: str, token: str) -> tuple[MJob | None, str | None]:
        """The job if `token` is its live lease, else the fencing error."""
        j = self.jobs.get(jid)
        if j is None:
            return None, NOT_FOUND
        if j.state != "active" or j.token != token or (j.lease_expires_at or 0) <= self.now:
            return None, LEASE_LOST
        return j, None

    # ---- operations ------------------------------------------------------------

    def enqueue(self, queue: str, lines: list[MNew],
                got: list[tuple[str, str, bool]]) -> list[tuple[str, str, bool]]:
        """The expected (id, state, created) per line; `got` (the core's answer) supplies
        generated ids, which are checked to be fresh and increasing."""
        assert len(got) == len(lines), (lines, got)
        out: list[tuple[str, str, bool]] = []
        qs = self.q(queue)
        for nj, (got_id, _, _) in zip(lines, got, strict=True):
            if nj.id is not None and nj.id in self.jobs:
                out.append((nj.id, self.jobs[nj.id].state, False))
                continue
            if nj.key is not None:
                old = self.keys.get((queue, nj.key))
                if old is not None and old in self.jobs:
                    oj = self.jobs[old]
                    if not (oj.state in FINISHED
                            and (oj.finished_at or 0) + self.cfg.key_window_s <= self.now):
                        out.append((old, oj.state, False))
                        continue
                    self.notes.append("key reused after its window")
            if nj.id is not None:
                jid = nj.id
            else:
                jid = got_id
                assert jid not in self.jobs, f"generated id {jid} already in use"
                if self._last_generated is not None:
                    assert jid > self._last_generated, f"ids not increasing: {self._last_generated} {jid}"
                self._last_generated = jid
            j = MJob(jid, queue, nj.type, nj.payload, nj.priority, nj.max_attempts, nj.timeout,
                     nj.key, self.now)
            self.jobs[jid] = j
            if nj.key is not None:
                self.keys[(queue, nj.key)] = jid
            if nj.run_at is not None and nj.run_at > self.now:
                self._schedule(j, nj.run_at)
            else:
                self._make_ready(j)
            qs.enqueued_total += 1
            out.append((jid, j.state, True))
        return out

    def lease_expect(self, queues: list[str], max_n: int) -> list[str]:
        out: list[str] = []
        for queue in queues:
            if self.q(queue).paused:
                continue
            taken = set(out)
            out += [jid for jid in self.ready_order(queue) if jid not in taken][: max_n - len(out)]
            if len(out) >= max_n:
                break
        return out

    def lease_apply(self, jid: str, token: str, timeout: float | None, worker: str | None) -> None:
        j = self.jobs[jid]
        assert j.state == "queued", f"leased a job that is {j.state}: {jid}"
        assert token not in self._tokens, f"lease token {token} handed out twice"
        self._tokens.add(token)
        self.issued.append((jid, token))
        j.state, j.attempt, j.token, j.worker = "active", j.attempt + 1, token, worker
        j.ended_by = None
        j.started_at = self.now
        j.lease_expires_at = self.now + (timeout if timeout is not None else j.timeout)

    def _ended(self, j: MJob, token: str, call: str) -> None:
        j.ended_by = (token, call)
        self.endings.append((j.id, token, call))

    def repeats(self, jid: str, token: str, call: str) -> MJob | None:
        """The job if this call with this token is the one that ended its last lease."""
        j = self.jobs.get(jid)
        return j if j is not None and j.ended_by == (token, call) else None

    def ack(self, jid: str, token: str, result: bytes | None) -> str | None:
        j, err = self.held(jid, token)
        if j is None:
            if self.repeats(jid, token, "ack"):
                self.notes.append("ack repeated")
                return None
            return err
        self._leave_active(j)
        self._ended(j, token, "ack")
        if result is not None and result != b"null":
            j.result = result
        j.state, j.finished_at = "completed", self.now
        self.q(j.queue).completed_total += 1
        return None

    def fail(self, jid: str, token: str, error: str, details: str | None, retry: bool,
             retry_in: float | None, jitter: float) -> tuple[str, float | None] | str:
        j, err = self.held(jid, token)
        if j is None:
            again = self.repeats(jid, token, "fail")
            if again is not None:
                self.notes.append(f"fail repeated: {again.state}")
                return again.state, again.run_at
            assert err is not None
            return err
        self._leave_active(j)
        self._ended(j, token, "fail")
        self._add_error(j, error, details)
        self.q(j.queue).failed_total += 1
        if not retry or j.attempt >= j.max_attempts:
            j.state, j.finished_at = "dead", self.now
            return "dead", j.run_at
        delay = retry_in if retry_in is not None else self.backoff(j.attempt) * jitter
        if delay <= 0:
            self._make_ready(j)
        else:
            self._schedule(j, self.now + delay)
        return j.state, j.run_at

    def release(self, jid: str, token: str, delay: float) -> tuple[str, float | None] | str:
        """The holder hands the job back unrun: as if that lease never happened, but for
        when it runs again (now, at the back of its priority, or after delay)."""
        j, err = self.held(jid, token)
        if j is None:
            assert err is not None
            return err
        self._leave_active(j)
        j.attempt -= 1
        if delay > 0:
            self._schedule(j, self.now + delay)
        else:
            self._make_ready(j)
        return j.state, j.run_at

    def heartbeat(self, jid: str, token: str, extend: float | None,
                  progress: bytes | None) -> float | str:
        j, err = self.held(jid, token)
        if j is None:
            assert err is not None
            return err
        j.lease_expires_at = self.now + (extend if extend is not None else j.timeout)
        if progress is not None:
            j.progress = progress
        return j.lease_expires_at

    def cancel(self, jid: str) -> str | None:
        j = self.jobs.get(jid)
        if j is None:
            return NOT_FOUND
        if j.state in FINISHED:
            return INVALID_STATE
        self._leave_active(j)
        j.state, j.finished_at, j.ended_by = "cancelled", self.now, None
        return None

    def _requeue(self, j: MJob) -> None:
        self._leave_active(j)
        j.attempt, j.finished_at, j.ended_by = 0, None, None
        self._make_ready(j)

    def retry(self, jid: str) -> str | None:
        j = self.jobs.get(jid)
        if j is None:
            return NOT_FOUND
        if j.state not in ("dead", "cancelled"):
            return INVALID_STATE
        self._requeue(j)
        return None

    def redrive(self, queue: str, limit: int) -> int:
        dead = [j for j in self.in_queue(queue) if j.state == "dead"][:limit]
        for j in dead:
            self._requeue(j)
        return len(dead)

    def purge(self, queue: str, state: str) -> int:
        """A whole purge (however many steps it takes): every job of the queue in `state`
        goes, nothing else does."""
        victims = [j.id for j in self.in_queue(queue) if j.state == state]
        for jid in victims:
            self._delete(jid)
        return len(victims)

    def set_paused(self, queue: str, paused: bool) -> None:
        self.q(queue).paused = paused

    def delete_queue(self, queue: str, force: bool) -> tuple[int, str | None]:
        """(jobs deleted, error): with force every job of the queue goes first; a queue that
        still holds jobs stays as it is (invalid_state); else it is forgotten and looks brand
        new (not paused, totals 0) whether or not it was known."""
        purged = 0
        if force:
            for j in self.in_queue(queue):
                self._delete(j.id)
                purged += 1
        if self.in_queue(queue):
            return purged, "invalid_state"
        self.queues.pop(queue, None)
        return purged, None

    def tick(self, run_at_of: Callable[[str], float | None]) -> None:
        """Everything due by now: scheduled jobs become ready (in due order), expired
        leases are retried with backoff or go dead, finished jobs past retention go.

        `run_at_of(id)` reads the core's run_at for a job put back after lease expiry
        (its jitter comes from the id); the model checks it against the backoff bounds."""
        now_ms = ms(self.now)
        due = sorted((ms(j.run_at or 0), j.id) for j in self.jobs.values()
                     if j.state == "scheduled" and ms(j.run_at or 0) <= now_ms)
        for _, jid in due:
            self._make_ready(self.jobs[jid])
        for j in list(self.jobs.values()):
            if j.state == "active" and (j.lease_expires_at or 0) <= self.now:
                self._leave_active(j)
                self._add_error(j, "lease_expired", None)
                self.q(j.queue).failed_total += 1
                if j.attempt >= j.max_attempts:
                    j.state, j.finished_at = "dead", self.now
                    continue
                run_at = run_at_of(j.id)
                assert run_at is not None, f"{j.id}: expired lease put back without run_at"
                base = self.backoff(j.attempt)
                delay = run_at - self.now
                assert base * 0.75 - 1e-6 <= delay <= base * 1.25 + 1e-6, (
                    f"{j.id}: backoff after lease expiry {delay:.4f}s outside "
                    f"[0.75, 1.25] x {base}s (attempt {j.attempt})")
                self._schedule(j, run_at)
            elif (j.state in FINISHED
                  and ms((j.finished_at or 0) + self.cfg.retention_s) <= now_ms):
                self._delete(j.id)
