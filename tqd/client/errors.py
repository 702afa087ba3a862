"""The client's errors: `ClientError` and one subclass per wire code, made from an answer.

Every `{"error": code}` answer becomes the subclass of its code (or, for a body without a
known code, such as a proxy's error page, of its HTTP status). `ConnectionFailed` (status
0) means no answer came. `transient()` says which errors may pass if the call is made again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = [
    "ClientError", "ConnectionFailed", "InvalidRequest", "InvalidJob", "InvalidQueue", "Unauthorized",
    "Forbidden", "NotFound", "MethodNotAllowed", "LeaseLost", "InvalidState", "PayloadTooLarge",
    "UnsupportedMediaType", "RateLimited", "NotReady", "NoLeader", "NotReplicated", "StorageFull",
    "ServerError", "error_from_response", "transient",
]


class ClientError(Exception):
    """Root of every error the client raises. `status` is 0 when no HTTP answer came."""

    code = "error"

    def __init__(self, message: str = "", *, status: int = 0, code: str | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        if code is not None:
            self.code = code
        self.status = status
        self.message = message or self.code.replace("_", " ")
        self.extra: dict[str, Any] = dict(extra or {})
        super().__init__(f"{self.code}: {self.message}" if status else self.message)

    @property
    def line(self) -> int | None:
        """The 1-based input line a bulk request was refused for, if any."""
        v = self.extra.get("line")
        return v if isinstance(v, int) else None


class ConnectionFailed(ClientError):
    code = "connection_failed"


class InvalidRequest(ClientError):
    code = "invalid_request"


class InvalidJob(ClientError):
    code = "invalid_job"


class InvalidQueue(ClientError):
    code = "invalid_queue"


class Unauthorized(ClientError):
    code = "unauthorized"


class Forbidden(ClientError):
    code = "forbidden"


class NotFound(ClientError):
    code = "not_found"


class MethodNotAllowed(ClientError):
    code = "method_not_allowed"


class LeaseLost(ClientError):
    code = "lease_lost"


class InvalidState(ClientError):
    code = "invalid_state"


class PayloadTooLarge(ClientError):
    code = "payload_too_large"


class UnsupportedMediaType(ClientError):
    code = "unsupported_media_type"


class RateLimited(ClientError):
    code = "rate_limited"


class QueueFull(RateLimited):
    """The queue is at its maximum depth: back off and enqueue again later."""

    code = "queue_full"


class NotReady(ClientError):
    code = "not_ready"


class NoLeader(NotReady):
    """A cluster node that takes no writes now (no leader known, or its leadership lapsed).
    Nothing was applied: any call may be made again (the client does, for `failover_s`)."""

    code = "no_leader"


class NotReplicated(NotReady):
    """The write committed on the leader, but not enough followers had it in time: it may
    survive a failover or not. Check before making a call that is not idempotent again."""

    code = "not_replicated"


class StorageFull(ClientError):
    code = "storage_full"


class ServerError(ClientError):
    code = "internal"


_BY_CODE: dict[str, type[ClientError]] = {
    c.code: c for c in (
        InvalidRequest, InvalidJob, InvalidQueue, Unauthorized, Forbidden, NotFound, MethodNotAllowed,
        LeaseLost, InvalidState, PayloadTooLarge, UnsupportedMediaType, RateLimited, QueueFull,
        NotReady, NoLeader, NotReplicated, StorageFull, ServerError,
    )
}
# When the body carries no known code (a proxy's error page), fall back on the status.
_BY_STATUS: dict[int, type[ClientError]] = {
    400: InvalidRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed,
    409: InvalidState, 413: PayloadTooLarge, 415: UnsupportedMediaType, 429: RateLimited,
    503: NotReady, 507: StorageFull,
}


def error_from_response(status: int, body: bytes) -> ClientError:
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raw = None
    if isinstance(raw, dict) and isinstance(raw.get("error"), str):
        code, msg = raw["error"], str(raw.get("message") or "")
        extra = {k: v for k, v in raw.items() if k not in ("error", "message")}
    else:
        code, msg, extra = "", body[:200].decode(errors="replace").strip(), {}
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or (ServerError if status >= 500 else ClientError)
    return cls(msg or f"HTTP {status}", status=status, code=code or None, extra=extra)


def transient(e: ClientError) -> bool:
    """Whether the same call may succeed later: no answer came, or the server (or a proxy)
    was busy, between leaders, or unable to replicate in time."""
    return e.status == 0 or e.status in (429, 502, 503, 504)
