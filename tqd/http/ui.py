"""``GET /ui``: the web dashboard's files (tqd/ui/static), served from the package.

The files are public: they hold no data (the page reads the JSON API, with a token when
the server runs with ``--auth``), so the routes are open and not rate limited. ``--ui
false`` leaves them out of the app (then ``/ui`` is 404).

- **Only the package's own files.** The file name is one path segment matched against the
  names found in the directory at the first request: nothing else is read, so there is no
  path to traverse. Anything else is ``404 not_found``.
- **Nothing blocks the event loop.** The files (tens of KiB) are read, and gzipped once,
  on a thread at the first request, and kept in memory.
- **Caching.** The file names carry no version, so a browser must ask again each time
  (``Cache-Control: no-cache``) and gets ``304`` while its ``ETag`` (a hash of the bytes)
  is current: an upgrade of tqd is seen at the next load.
- **A strict Content-Security-Policy**: scripts, styles and connections from this origin
  only, no inline script or style, no framing, no plugins. The page's code keeps to it
  (tests/test_ui.py fails on a violation).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import re
from pathlib import Path
from typing import NamedTuple

from aiohttp import web

from ..errors import NotFound

STATIC = Path(__file__).resolve().parent.parent / "ui" / "static"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
INDEX = "index.html"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
GZIP_MIN_BYTES = 1024  # smaller files are sent as they are


class Asset(NamedTuple):
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str


def load(directory: Path = STATIC) -> dict[str, Asset]:
    """Every file of the directory whose type is known, by name (blocking: on a thread)."""
    out = {}
    for path in sorted(directory.iterdir()):
        ctype = TYPES.get(path.suffix)
        if ctype is None or not path.is_file():
            continue
        body = path.read_bytes()
        packed = gzip.compress(body, 9, mtime=0) if len(body) >= GZIP_MIN_BYTES else None
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        out[path.name] = Asset(body, packed, ctype, etag)
    return out


class _Files:
    """The files, read at the first request (two first requests may both read them: the
    same bytes, and no lock to bind to one event loop)."""

    def __init__(self) -> None:
        self._files: dict[str, Asset] | None = None

    async def get(self) -> dict[str, Asset]:
        if self._files is None:
            self._files = await asyncio.to_thread(load)
        return self._files


_FILES = _Files()


def _not_modified(request: web.Request, etag: str) -> bool:
    tags = request.headers.get("If-None-Match", "")
    return any(t.strip().removeprefix("W/") in (etag, "*") for t in tags.split(","))


def _takes_gzip(accept: str) -> bool:
    for part in accept.split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return not _Q_ZERO.search(params)
    return False


_Q_ZERO = re.compile(r"q\s*=\s*0(?:\.0*)?\s*$", re.I)


async def _serve(request: web.Request, name: str) -> web.Response:
    asset = (await _FILES.get()).get(name)
    if asset is None:
        raise NotFound(f"no file {name[:200]!r} in the dashboard")
    gz = asset.gzipped if _takes_gzip(request.headers.get("Accept-Encoding", "")) else None
    etag = asset.etag if gz is None else asset.etag[:-1] + '-gz"'  # one per representation
    headers = {**HEADERS, "ETag": etag, "Vary": "Accept-Encoding"}
    if _not_modified(request, etag):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = asset.content_type
    if gz is not None:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=asset.body if gz is None else gz, headers=headers)


async def ui_root(request: web.Request) -> web.Response:
    """GET /ui: the page (its links are absolute, so /ui and /ui/ are the same page)."""
    return await _serve(request, INDEX)


async def ui_index(request: web.Request) -> web.Response:
    """GET /ui/: the page."""
    return await _serve(request, INDEX)


async def ui_file(request: web.Request) -> web.Response:
    """GET /ui/{file}: a script or the stylesheet of the page."""
    return await _serve(request, request.match_info["file"])


HANDLERS = (ui_root, ui_index, ui_file)
