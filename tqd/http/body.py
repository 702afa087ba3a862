"""Request bodies at the door: what a body must pass before a handler decodes it.

Each route has a BodyRule naming its row of protocol.BODY_LIMITS. `check_head` refuses
from the headers alone (also for `Expect: 100-continue`, before the client sends a
byte of the body); `read` then reads no further than the limit and no slower than the
body timeout allows, undoes gzip/deflate within the limit, and checks UTF-8 once over
the whole body. Nothing here stores anything: a refused body changes nothing.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import NamedTuple

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from .. import protocol as p
from ..config import Settings
from ..errors import InvalidRequest, PayloadTooLarge, RequestTimeout, TqdError, UnsupportedMediaType

NDJSON = "application/x-ndjson"
_JSONISH = {"", "text/plain", "application/x-www-form-urlencoded"}  # what curl -d and friends send
# request key: close the connection as soon as the answer is written, without draining the rest
# of the body first (aiohttp reads up to 10 s of it so that a client still sending sees the answer)
DROP = "tqd.drop"
_ECHO = re.compile(r"^(b'|b\"|bytearray\(|\^|\d+, message$)")  # aiohttp echoing the bad bytes


class BodyRule(NamedTuple):
    """What a route accepts as its body."""

    json: str = "none"  # the protocol.BODY_LIMITS row of a JSON body
    ndjson: str | None = None  # the row of an NDJSON body, where it differs
    bad: type[TqdError] = InvalidRequest  # the 400 of a body that is not UTF-8

    @property
    def takes_body(self) -> bool:
        return self.json != "none"


def is_ndjson(request: web.Request) -> bool:
    """Whether the body is NDJSON (else JSON); 415 for a type that is neither."""
    raw_type = request.headers.get("Content-Type")
    ctype = "" if raw_type is None else request.content_type.lower()
    if ctype == NDJSON:
        return True
    if ctype == "application/json" or ctype in _JSONISH:
        return False
    raise UnsupportedMediaType(f"unsupported Content-Type {raw_type!r}; "
                               f"send application/json or {NDJSON}")


def check_head(request: web.Request, rule: BodyRule, s: Settings) -> tuple[int, str, bool, str]:
    """What the headers alone decide: the type (415), the declared length against the
    route's limit (413, closing: nothing is read), the content coding (415).
    Returns the limit, what the limit is of, whether NDJSON, and the coding."""
    ndjson = rule.takes_body and is_ndjson(request)
    limit, what = p.body_limit(rule.ndjson if ndjson and rule.ndjson else rule.json, s)
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"{what} is larger than {limit} bytes").closing()
    coding = p.content_coding(request.headers.get("Content-Encoding", "")) if rule.takes_body else ""
    return limit, what, ndjson, coding


async def read(request: web.Request, rule: BodyRule, s: Settings) -> tuple[bytes, bool]:
    """The body and whether it is NDJSON.

    In order, each before any work is spent on the next: the headers (check_head), the
    bytes as they arrive (413 past the limit, 408 when they stall), the decompressed
    size (413), UTF-8 (400, with the line of an NDJSON body). Untyped and form-typed
    bodies (`curl -d`) are JSON unless they clearly are not (protocol.looks_like_json):
    then 415; so broken JSON sent by curl gets a 400 that says where it breaks.
    """
    limit, what, ndjson, coding = check_head(request, rule, s)
    raw = await _read_limited(request, s, limit, what)
    body = p.decode_content(raw, coding, limit) if coding else raw
    p.check_utf8(body, rule.bad, ndjson)
    if not ndjson and request.content_type.lower() != "application/json" and not p.looks_like_json(body):
        raw_type = request.headers.get("Content-Type") or "(none)"
        raise UnsupportedMediaType(f"Content-Type {raw_type} with a body that is not JSON; send "
                                   f"application/json or {NDJSON}")
    return body, ndjson


async def _read_limited(request: web.Request, s: Settings, limit: int, what: str) -> bytes:
    """The raw body, read no further than `limit` bytes and no slower than the settings allow.

    A read waits at most body_timeout_s for more bytes, and the whole body must arrive by
    a deadline of body_timeout_s plus 1 s per body_min_rate_bytes_s received (a trickle
    of a byte a second would otherwise hold the connection for days).
    """
    content = request.content
    chunks: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        while True:
            chunk = content.read_nowait(-1)  # what has arrived: all of it, for most bodies
            if not chunk:
                if content.is_eof():
                    break
                deadline = start + s.body_timeout_s + (
                    size / s.body_min_rate_bytes_s if s.body_min_rate_bytes_s else math.inf)
                wait = min(s.body_timeout_s, deadline - loop.time())
                try:
                    async with asyncio.timeout(max(wait, 0)):
                        chunk = await content.readany()
                except TimeoutError:
                    request[DROP] = True  # too slow to be worth draining the rest for
                    raise RequestTimeout(
                        f"the body came too slowly (no bytes for {s.body_timeout_s:g} s, or under "
                        f"{s.body_min_rate_bytes_s} bytes/s)") from None
                if not chunk:
                    break
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"{what} is larger than {limit} bytes").closing()
            chunks.append(chunk)
    except RequestPayloadError as e:  # broken chunked framing, or cut short
        raise InvalidRequest(f"the body could not be read: {http_error_text(e)}").closing() from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def http_error_text(e: BaseException) -> str:
    """An aiohttp parser error as one short line: its sentences, without the echoed bytes."""
    text = getattr(e, "message", None) or str(e)
    keep = []
    for ln in str(text).splitlines():
        ln = ln.strip().rstrip(":")
        if ln and not _ECHO.match(ln):
            keep.append(ln)
    return ": ".join(keep)[:200] or type(e).__name__
