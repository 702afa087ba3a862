"""Fuzz the real server with schemathesis, from docs/openapi.json.

One `tqd serve` (port 0, a temp dir) for the module; for each operation of the document a
bounded number of generated requests, valid and invalid (schemathesis's positive and negative
modes), each checked for: no 5xx, a status the document lists for the operation, the
document's content type, a body that matches the document's schema, the headers it requires.
The server runs without --auth (a run with tokens is to come with the auth work).

Left out, with the reason:
- the replication routes (/v1/_repl/*, x-internal): a standalone server answers them
  503 no_leader by design (it has no log to ship); they need a cluster to fuzz.
- the long-polls (POST /v1/lease, GET /v1/jobs/{id}?wait=): a generated `wait` is cut to
  0.1 s, so that the run stays bounded (up to 60 s per example otherwise); the rest of the
  request is as generated.
- GET /openapi.json, until app.py serves it (tqd/http/openapi.py describes it already).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import requests
import schemathesis
from conftest import ServerProcess
from hypothesis import HealthCheck, reject, settings
from schemathesis import checks as st_checks
from schemathesis.specs.openapi import checks as oa_checks

from tqd.http.app import ROUTES

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "openapi.json"
NDJSON = "application/x-ndjson"
# per operation: the whole file stays well under a minute on 2 cores; more for a deeper run
MAX_EXAMPLES = int(os.environ.get("TQD_FUZZ_EXAMPLES", "60"))
WAIT_S = 0.1

EXCLUDED = {
    "/v1/_repl/log": "internal: a standalone server answers 503 no_leader by design",
    "/v1/_repl/snapshot": "internal: a standalone server answers 503 no_leader by design",
}
if ("GET", "/openapi.json") not in {(r.method, r.path) for r in ROUTES}:
    EXCLUDED["/openapi.json"] = "not served until app.py registers tqd.http.openapi.openapi"

CHECKS = [
    st_checks.not_a_server_error,
    oa_checks.status_code_conformance,
    oa_checks.content_type_conformance,
    oa_checks.response_schema_conformance,
    oa_checks.response_headers_conformance,
]


class KnownBug(NamedTuple):
    """A server bug the fuzzer found, not fixed yet: examples that hit it are rejected (so
    that the run goes on finding others), and test_known_bug_is_still_there fails once it
    is fixed, so that the entry goes too."""

    what: str
    hits: Callable[[Any], bool]  # the generated case runs into it
    method: str  # a request that shows it
    path: str
    content_type: str
    body: bytes


def _ack_line_with_empty_id(case: Any) -> bool:
    return (case.path == "/v1/ack" and isinstance(case.body, list)
            and any(isinstance(line, dict) and line.get("id") == "" for line in case.body))


KNOWN_BUGS = [
    KnownBug("POST /v1/ack: a line with an empty id is 500 internal (LMDB MDB_BAD_VALSIZE on the "
             "empty key), not 200 with that line not_found",
             _ack_line_with_empty_id, "POST", "/v1/ack", NDJSON, b'{"id": "", "lease": "x"}\n'),
]


@schemathesis.serializer(NDJSON)
def _ndjson_out(ctx: Any, value: Any) -> bytes:
    """The document describes an NDJSON body as the array of its lines."""
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


@schemathesis.deserializer(NDJSON)
def _ndjson_in(ctx: Any, response: Any) -> list[Any]:
    return [json.loads(line) for line in response.content.splitlines() if line.strip()]


schema = schemathesis.openapi.from_dict(json.loads(DOC.read_text(encoding="utf-8")))
schema = schema.exclude(path=list(EXCLUDED))


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The server, its stderr read as it comes: thousands of refused requests log more than
    a pipe holds, and a server blocked writing its log answers nothing."""
    s = ServerProcess(tmp_path_factory.mktemp("fuzz") / "data").start()
    proc, err = s.proc, s.proc.stderr if s.proc else None
    assert proc is not None and err is not None
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(err.readline, b"")), daemon=True)
    reader.start()
    yield s
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(30)
    reader.join(10)
    err.close()
    log = (s.log + b"".join(chunks)).decode(errors="replace")
    assert "Traceback" not in log, log[-20_000:]
    assert rc == 0, log[-5000:]


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def _long(wait: object) -> bool:
    return isinstance(wait, int | float) and not isinstance(wait, bool) and wait > WAIT_S


def _bounded(case: Any) -> None:
    """The long-polls wait WAIT_S at most."""
    if case.path == "/v1/lease" and isinstance(case.body, dict) and _long(case.body.get("wait")):
        case.body["wait"] = WAIT_S
    if case.path == "/v1/jobs/{id}" and isinstance(case.query, dict):
        try:
            if _long(float(case.query.get("wait", 0))):
                case.query["wait"] = WAIT_S
        except (TypeError, ValueError):
            pass


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          # filter_too_much: KNOWN_BUGS rejects examples; too_slow: each example is a request
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_api_conforms(case: Any, fuzz_server: ServerProcess, session: requests.Session) -> None:
    _bounded(case)
    if any(bug.hits(case) for bug in KNOWN_BUGS):
        reject()
    case.call_and_validate(base_url=fuzz_server.url, session=session, checks=CHECKS, timeout=10)


@pytest.mark.parametrize("bug", KNOWN_BUGS, ids=[b.path for b in KNOWN_BUGS])
def test_known_bug_is_still_there(bug: KnownBug, server_factory: type[ServerProcess],
                                  tmp_path: Path) -> None:
    """Passes while the bug is there; once it is fixed, remove its entry from KNOWN_BUGS."""
    s = server_factory(tmp_path / "data").start()
    r = requests.request(bug.method, s.url + bug.path, data=bug.body,
                         headers={"Content-Type": bug.content_type}, timeout=10)
    s.stop()
    assert r.status_code >= 500, (f"fixed? {bug.method} {bug.path} answers {r.status_code} "
                                  f"{r.text[:200]}: remove it from KNOWN_BUGS ({bug.what})")
