"""One error vocabulary: every expected failure is a TqdError with a wire code.

Anything that is not a TqdError reaching the HTTP layer is a bug (500).
"""

from __future__ import annotations

from typing import Any


class TqdError(Exception):
    code = "error"
    http_status = 400

    def __init__(self, message: str = "", **extra: Any) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code.replace("_", " ")
        self.extra = extra

    def to_wire(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class InvalidRequest(TqdError):
    code, http_status = "invalid_request", 400


class InvalidJob(TqdError):
    code, http_status = "invalid_job", 400


class InvalidQueue(TqdError):
    code, http_status = "invalid_queue", 400


class Unauthorized(TqdError):
    code, http_status = "unauthorized", 401


class Forbidden(TqdError):
    code, http_status = "forbidden", 403


class NotFound(TqdError):
    code, http_status = "not_found", 404


class MethodNotAllowed(TqdError):
    code, http_status = "method_not_allowed", 405


class LeaseLost(TqdError):
    code, http_status = "lease_lost", 409


class InvalidState(TqdError):
    code, http_status = "invalid_state", 409


class PayloadTooLarge(TqdError):
    code, http_status = "payload_too_large", 413


class UnsupportedMediaType(TqdError):
    code, http_status = "unsupported_media_type", 415


class RateLimited(TqdError):
    code, http_status = "rate_limited", 429


class NotReady(TqdError):
    code, http_status = "not_ready", 503


class StorageFull(TqdError):
    code, http_status = "storage_full", 507


class Internal(TqdError):
    code, http_status = "internal", 500


BY_CODE: dict[str, type[TqdError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest, InvalidJob, InvalidQueue, Unauthorized, Forbidden, NotFound,
        MethodNotAllowed, LeaseLost, InvalidState, PayloadTooLarge, UnsupportedMediaType,
        RateLimited, NotReady, StorageFull, Internal,
    )
}
