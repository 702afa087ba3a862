"""The request log: one line per HTTP request, at debug level (``--log-level debug``).

Logger ``tqd.access``. Its fields (tqd.observe.logs puts them in the JSON line): ``method``,
``path`` (no query string), ``route`` (the route table's pattern, "(no route)" for a 404),
``status`` (499: the client went away first), ``ms``, ``remote`` (the TCP peer) and
``token`` (the token's name, with auth). Never a body, a query string or a token itself.

The middleware (app.py) asks ``enabled()`` once, when the app is made (the level is set at
start, before that): at any level above debug a request pays one test of a local boolean.
"""

from __future__ import annotations

import logging

from aiohttp import web

from . import auth

log = logging.getLogger("tqd.access")


def enabled() -> bool:
    return log.isEnabledFor(logging.DEBUG)


def line(request: web.Request, route: str, status: int, elapsed_s: float) -> None:
    """The request's line (call it once `enabled()`)."""
    g = request.get(auth.GUARD)
    who = g.who.name if g is not None and g.who is not None else None
    ms = round(elapsed_s * 1000, 2)
    path = request.path[:2000]
    text = f"{request.method} {path} {status} {ms}ms from {request.remote}"
    log.debug(text + (f" token {who}" if who else ""),
              extra={"method": request.method, "path": path, "route": route, "status": status,
                     "ms": ms, "remote": request.remote, "token": who})
