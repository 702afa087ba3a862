"""A no-op HTTP server for the http_ceiling scenario: aiohttp on uvloop, like tqd, that
answers POST /v1/queues/{q}/jobs with a fixed 201 JSON body and stores nothing.

    python bench/noop_http.py [--procs N]   (prints "tqd listening on http://HOST:PORT")

``--procs N``: N processes share the port (SO_REUSEPORT, the kernel spreads connections),
what several tqd event-loop processes could at most add on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import sys

import uvloop
from aiohttp import web

_n = itertools.count()


async def enqueue(request: web.Request) -> web.Response:
    await request.read()
    body = b'{"id":"%018x","state":"queued","created":true}' % next(_n)
    return web.Response(status=201, body=body, content_type="application/json")


def listener(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1024)
    return s


async def serve(sock: socket.socket, announce: bool) -> None:
    app = web.Application()
    app.router.add_post("/v1/queues/{queue}/jobs", enqueue)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    if announce:
        port = sock.getsockname()[1]
        print(f"tqd listening on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=1)
    n = ap.parse_args().procs
    first = listener(0)
    socks = [first] + [listener(first.getsockname()[1]) for _ in range(n - 1)]
    children = []
    for i in range(1, n):
        pid = os.fork()
        if pid == 0:
            uvloop.run(serve(socks[i], announce=False))
            os._exit(0)
        children.append(pid)

    def stop(*_: object) -> None:  # take the helpers along
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        uvloop.run(serve(socks[0], announce=True))
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    main()
