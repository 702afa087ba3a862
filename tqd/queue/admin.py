"""Admin ops on jobs and queues: cancel, retry, redrive, purge, pause/resume, delete a queue.

Built on the lifecycle's ``Rules``; what these ops add is which states each one accepts,
and walking a queue's indexes in bounded steps.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidState, NotFound
from ..protocol import STATES
from . import ops
from . import records as r
from .lifecycle import Rules
from .ports import WriteTx


class Admin(Rules):
    """Ops an operator sends, on one job or on a whole queue."""

    # ---- jobs ---------------------------------------------------------------

    def cancel(self, tx: WriteTx, op: ops.Cancel) -> None:
        spec, st = self._load(tx, op.id)
        if st.state in r.FINISHED:
            raise InvalidState(f"job is {STATES[st.state]}; only unfinished jobs can be cancelled")
        qs = tx.qstat(spec.queue)
        self._leave(tx, qs, op.id, spec, st)
        self._finish(tx, qs, op.id, st, r.CANCELLED, op.now)
        tx.put_state(op.id, st)

    def _requeue(self, tx: WriteTx, jid: str, spec: r.JobSpec, st: r.JobState, now: float) -> None:
        qs = tx.qstat(spec.queue)
        self._leave(tx, qs, jid, spec, st)
        st.attempt, st.finished_at = 0, None
        self._make_ready(tx, qs, spec.queue, spec.priority, jid, st, now)
        tx.put_state(jid, st)

    def retry(self, tx: WriteTx, op: ops.Retry) -> None:
        spec, st = self._load(tx, op.id)
        if st.state not in (r.DEAD, r.CANCELLED):
            raise InvalidState(f"job is {STATES[st.state]}; only dead or cancelled jobs can be retried")
        self._requeue(tx, op.id, spec, st, op.now)

    # ---- queues ---------------------------------------------------------------

    def redrive(self, tx: WriteTx, op: ops.Redrive) -> int:
        ids = [jid for _, jid in _take(tx.scan_index("dead", op.queue, 0), op.limit)]
        for jid in ids:
            spec, st = self._load(tx, jid)
            self._requeue(tx, jid, spec, st, op.now)
        return len(ids)

    def purge(self, tx: WriteTx, op: ops.Purge) -> tuple[int, int | None]:
        """One purge step: (deleted, the cursor to go on from, or None when the queue's index
        has been read to its end). Each step reads at most ``scan`` entries, so a purge that
        must pass many jobs in other states moves on instead of rescanning them."""
        which = "dead" if op.state == r.DEAD else "qidx"
        scan = op.scan or (op.limit if op.state == r.DEAD else op.limit * 20)
        victims: list[str] = []
        cursor: int | None = None
        for n, (qseq, jid) in enumerate(tx.scan_index(which, op.queue, op.after), 1):
            st = tx.get_state(jid)
            if st is not None and (st.state == op.state or op.state == r.ANY_STATE):
                victims.append(jid)
            if len(victims) >= op.limit or n >= scan:
                cursor = qseq
                break
        for jid in victims:
            self._delete(tx, jid)
        return len(victims), cursor

    def set_paused(self, tx: WriteTx, op: ops.SetPaused) -> None:
        if not op.paused and tx.peek_qstat(op.queue) is None:
            return  # resuming a queue that does not exist: nothing to store
        tx.qstat(op.queue).paused = op.paused
        tx.puts += 1  # the counters record is the change
        if not op.paused:
            tx.ready_queues[op.queue] = 1 << 30  # wake every waiter

    def delete_queue(self, tx: WriteTx, op: ops.DeleteQueue) -> None:
        qs = tx.peek_qstat(op.queue)
        if qs is None:
            raise NotFound(f"no queue {op.queue}")
        held = qs.queued + qs.scheduled + qs.active + qs.dead + qs.completed + qs.cancelled
        if held:
            raise InvalidState(f"queue {op.queue} holds {held} jobs; delete it with force=true "
                               "to delete them too")
        tx.delete_qstat(op.queue)


def _take(it: Any, n: int) -> list[Any]:
    out = []
    for x in it:
        out.append(x)
        if len(out) >= n:
            break
    return out
