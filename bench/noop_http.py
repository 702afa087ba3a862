"""A no-op HTTP server for the http_ceiling scenario: aiohttp on uvloop, like tqd, that
answers POST /v1/queues/{q}/jobs with a fixed 201 JSON body and stores nothing.

Run by the harness: python bench/noop_http.py  (prints "tqd listening on http://HOST:PORT")
"""

from __future__ import annotations

import asyncio
import itertools
import sys

import uvloop
from aiohttp import web

_n = itertools.count()


async def enqueue(request: web.Request) -> web.Response:
    await request.read()
    body = b'{"id":"%018x","state":"queued","created":true}' % next(_n)
    return web.Response(status=201, body=body, content_type="application/json")


async def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/queues/{queue}/jobs", enqueue)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"tqd listening on http://127.0.0.1:{runner.addresses[0][1]}", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main())
