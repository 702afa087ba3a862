"""S3 endpoints for tests, each on a free loopback port, none touching global state.

- `moto_s3()`: moto's S3 server in a thread. It enforces If-None-Match / If-Match (412),
  like AWS. `MotoS3.bucket()` makes a fresh bucket, so one server serves many tests.
- `naive_s3()`: a look-alike that stores objects on PUT and serves GET / HEAD / DELETE
  (one key, and DeleteObjects)
  well enough for obstore's S3Store, but IGNORES If-Match / If-None-Match, as rclone
  serve s3 and s3rver do: a "conditional" write overwrites. It can also be told to answer
  every PUT with a fixed error (409 ConditionalRequestConflict, 503, ...), or to honour
  If-None-Match alone.
- `closed_port()`, `silent_port()`: an endpoint that refuses connections, and one that
  accepts them but never answers.

`s3_env()` is the AWS_* environment for a store at an endpoint; a test sets it (with
monkeypatch), as the daemon reads only the environment.
"""

from __future__ import annotations

import functools
import hashlib
import html
import http.server
import itertools
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

ACCESS_KEY, SECRET_KEY, REGION = "testing", "testing", "us-east-1"
_bucket_numbers = itertools.count(1)


def s3_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}


@dataclass
class MotoS3:
    endpoint: str

    @functools.cached_property
    def client(self) -> Any:
        """A boto3 S3 client for the server (for setting up what obstore should find)."""
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def bucket(self) -> str:
        """A new, empty bucket: moto's state is per process, so names never repeat."""
        name = f"lease-test-{next(_bucket_numbers)}"
        self.client.create_bucket(Bucket=name)
        return name


@contextmanager
def moto_s3() -> Iterator[MotoS3]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoS3(f"http://{host}:{port}")
    finally:
        server.stop()
        if server._server is not None:  # stop() leaves the socket open
            server._server.server_close()


@dataclass
class NaiveS3:
    endpoint: str
    objects: dict[str, bytes] = field(default_factory=dict)  # "/bucket/key" -> body
    put_status: int | None = None  # answer every PUT with this status instead
    put_code: str = ""
    puts: int = 0
    honour_if_none_match: bool = False  # a store with create-only writes but no CAS


class _NaiveHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as obstore expects
    s3: NaiveS3

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{code}</Message></Error>").encode()
        self._send(status, body, {"Content-Type": "application/xml"})

    def _object_headers(self, body: bytes) -> dict[str, str]:
        return {"ETag": f'"{hashlib.md5(body).hexdigest()}"',
                "Last-Modified": formatdate(usegmt=True),
                "Content-Type": "application/octet-stream"}

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.s3.puts += 1
        if self.s3.put_status is not None:
            return self._error(self.s3.put_status, self.s3.put_code)
        if self.s3.honour_if_none_match and self.headers.get("If-None-Match") == "*" \
                and self.path in self.s3.objects:
            return self._error(412, "PreconditionFailed")
        # If-Match (and by default If-None-Match) is ignored on purpose: the point of this server.
        self.s3.objects[self.path] = body
        self._send(200, headers={"ETag": self._object_headers(body)["ETag"]})

    def do_GET(self) -> None:
        body = self.s3.objects.get(self.path)
        if body is None:
            return self._error(404, "NoSuchKey")
        self._send(200, body, self._object_headers(body))

    do_HEAD = do_GET

    def do_DELETE(self) -> None:
        self.s3.objects.pop(self.path, None)
        self._send(204)

    def do_POST(self) -> None:
        """DeleteObjects (``POST /bucket?delete``), which obstore uses even for one key."""
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        bucket, _, query = self.path.partition("?")
        if query != "delete":
            return self._error(501, "NotImplemented")
        keys = re.findall(r"<Key>(.*?)</Key>", body)
        for key in keys:
            self.s3.objects.pop(f"{bucket}/{html.unescape(key)}", None)
        deleted = "".join(f"<Deleted><Key>{k}</Key></Deleted>" for k in keys)
        self._send(200, f"<DeleteResult>{deleted}</DeleteResult>".encode(),
                   {"Content-Type": "application/xml"})


@contextmanager
def naive_s3() -> Iterator[NaiveS3]:
    s3 = NaiveS3("")
    handler = type("Handler", (_NaiveHandler,), {"s3": s3})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    s3.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield s3
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> str:
    """An endpoint nothing listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def silent_port() -> Iterator[str]:
    """An endpoint that completes TCP connections (in the kernel's backlog) and never
    answers: a hung store."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
