"""What a worker says about its jobs: one log line per job event (logger ``tqd.worker``).

In text the line is for a person, aligned: the seconds since the job started, a mark, the
job id and type, the rest::

             → 01J9Z... send_email try 1/10
       0.01s ← 01J9Z... send_email ● {"sent_to":"a@example.com"}
       0.02s ↻ 01J9Z... send_email retrying in 5.00s: SMTP 451
       0.01s ✗ 01J9Z... send_email dead after try 1: Fatal: bad address
       1.20s ⊘ 01J9Z... render_pdf stopped: cancelled
             ↩ 01J9Z... render_pdf released (worker shutdown)

In json (tqd.observe.logs) every line has the job's fields: ``event`` (``started``,
``completed``, ``failed``, ``released``, ``cancelled``, ``lease_lost``, ``unreported``),
``job``, ``queue``, ``type``, ``attempt``; then ``ms`` (since the job started), and by
event ``max_attempts``, ``error``, ``retry`` (false: the job is dead), ``retry_in_s``,
``reason``.

Started and completed are info; a retry, a release, a lost lease are warnings; a dead job
and a failure that could not be reported are errors.
"""

from __future__ import annotations

import logging
from typing import Any

from .api import LeasedJob

log = logging.getLogger("tqd.worker")


def _say(level: int, job: LeasedJob, event: str, elapsed_s: float | None, mark: str, text: str,
         **more: Any) -> None:
    if not log.isEnabledFor(level):
        return
    fields: dict[str, Any] = {"event": event, "job": job.id, "queue": job.queue, "type": job.type,
                              "attempt": job.attempt}
    if elapsed_s is not None:
        fields["ms"] = round(elapsed_s * 1000, 1)
    fields.update(more)
    took = "" if elapsed_s is None else f"{elapsed_s:6.2f}s"
    log.log(level, "%8s %s %s %s %s", took, mark, job.id, job.type, text, extra=fields)


def started(job: LeasedJob) -> None:
    _say(logging.INFO, job, "started", None, "→", f"try {job.attempt}/{job.max_attempts}",
         max_attempts=job.max_attempts)


def completed(job: LeasedJob, elapsed_s: float, result: bytes) -> None:
    _say(logging.INFO, job, "completed", elapsed_s, "←", f"● {_short(result)}")


def failed(job: LeasedJob, elapsed_s: float, error: str, *, dead: bool,
           retry_in_s: float | None = None) -> None:
    """A failure the server took: the job is retried (in `retry_in_s`, if known) or dead."""
    if dead:
        _say(logging.ERROR, job, "failed", elapsed_s, "✗", f"dead after try {job.attempt}: {error}",
             error=error, retry=False)
    else:
        due = "" if retry_in_s is None else f" in {retry_in_s:.2f}s"
        _say(logging.WARNING, job, "failed", elapsed_s, "↻", f"retrying{due}: {error}", error=error,
             retry=True, retry_in_s=None if retry_in_s is None else round(retry_in_s, 3))


def released(job: LeasedJob, elapsed_s: float | None, why: str) -> None:
    """Handed back for another worker (worker shutdown)."""
    _say(logging.WARNING, job, "released", elapsed_s, "↩", f"released ({why})", reason=why)


def lost(job: LeasedJob, elapsed_s: float, reason: str, text: str, error: str | None = None) -> None:
    """The job is no longer ours (`reason`: "cancelled", or "lease lost (...)"); `text` says
    what became of its run ("stopped: cancelled", "finished, but ...; result dropped")."""
    event = "cancelled" if reason == "cancelled" else "lease_lost"
    more = {} if error is None else {"error": error}
    _say(logging.WARNING, job, event, elapsed_s, "⊘", text, reason=reason, **more)


def unreported(job: LeasedJob, elapsed_s: float, text: str, reason: str,
               error: str | None = None) -> None:
    """An outcome the server could not be told (the job runs again when its lease expires)."""
    more = {} if error is None else {"error": error}
    level = logging.WARNING if error is None else logging.ERROR
    _say(level, job, "unreported", elapsed_s, "⊘" if error is None else "!", text, reason=reason, **more)


def _short(raw: bytes, n: int = 80) -> str:
    s = raw.decode(errors="replace")
    return s if len(s) <= n else s[:n - 1] + "…"
