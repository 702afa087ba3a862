"""The audit log: one line per administrative action and per denied request.

Logger ``tqd.audit`` (level INFO, on the server's stderr with the rest), the message one
JSON object so that a log shipper takes it as is::

    {"audit": "cancel", "outcome": "ok", "status": 200, "who": "ops", "role": "admin",
     "method": "DELETE", "path": "/v1/jobs/01a2...", "from": "10.0.0.7",
     "at": "2026-11-30T18:00:00.123Z"}

- ``audit``: the action (``cancel``, ``retry``, ``redrive``, ``purge``, ``pause``,
  ``resume``, ``delete_queue``, ``token_create``, ``token_revoke``) or ``denied``.
- ``outcome``: ``ok``, or the error code the caller got (``unauthorized``,
  ``forbidden``, ``not_found``, ...).
- ``who``: the token's name (null without a token or without auth); ``from``: the TCP
  peer's address. ``X-Forwarded-For`` is not believed: any client can write it.

With ``--log-format json`` (tqd.observe.logs) these keys are the line's own, after ``ts``,
``level``, ``logger`` and ``msg`` (the action and outcome: ``"cancel ok"``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from ..observe.logs import Fields

log = logging.getLogger("tqd.audit")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(action: str, outcome: str, *, who: str | None, role: str | None, method: str,
           path: str, remote: str | None, status: int | None = None, **more: Any) -> None:
    line: dict[str, Any] = {"audit": action, "outcome": outcome}
    if status is not None:
        line["status"] = status
    line.update(who=who, role=role, method=method, path=path[:2000], **{"from": remote},
                at=_now(), **more)
    log.info(Fields(f"{action} {outcome}", line))
