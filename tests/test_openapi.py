"""The OpenAPI document (tqd/http/openapi.py, docs/openapi.json) stays true to the server.

- OPS has an entry for every route of ROUTES and no other (the document's own route is
  allowed before app.py serves it);
- docs/openapi.json is what `python -m tqd.http.openapi` prints now;
- docs/openapi.json and docs/protocol.md name the same routes;
- the error codes and statuses in the document are ones the server gives;
- the handler serves the document.
(tests/test_fuzz.py holds the server's answers to the document.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from test_protocol_doc import HEADING, given_errors

from tqd.http import openapi as oa
from tqd.http.app import ROUTES

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "openapi.json"
PROTOCOL = ROOT / "docs" / "protocol.md"
SELF = ("GET", oa.OPENAPI_PATH)


def _served() -> set[tuple[str, str]]:
    return {(r.method, r.path) for r in ROUTES}


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m.upper(), path): op for path, ops in doc["paths"].items() for m, op in ops.items()}


def test_every_route_has_an_entry_and_no_entry_is_stale() -> None:
    served = _served()
    missing = sorted(served - set(oa.OPS))
    assert not missing, f"tqd.http.openapi.OPS has no entry for {missing}"
    stale = sorted(set(oa.OPS) - served - {SELF})  # its own route: described before it is served
    assert not stale, f"tqd.http.openapi.OPS describes routes that ROUTES does not have: {stale}"


def test_a_route_without_an_entry_stops_the_document(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = dict(oa.OPS)
    del ops[("POST", "/v1/lease")]
    monkeypatch.setattr(oa, "OPS", ops)
    with pytest.raises(LookupError, match="POST /v1/lease"):
        oa.openapi_document()


def test_the_document_has_every_route_with_what_the_route_table_says() -> None:
    doc = oa.openapi_document()
    ops = _operations(doc)
    assert set(ops) == _served() | {SELF}
    for r in ROUTES:
        op = ops[(r.method, r.path)]
        assert op["operationId"] == r.handler.__name__
        assert op["x-tqd-write"] is r.write
        assert ("307" in op["responses"]) is r.write, f"{r.method} {r.path}: 307 only for writes"
        assert ("requestBody" in op) is r.body.takes_body, f"{r.method} {r.path}"
        assert op.get("x-internal", False) is r.path.startswith("/v1/_repl/"), f"{r.method} {r.path}"
        for status in op["responses"]:
            assert re.fullmatch(r"[1-5]\d\d", status), f"{r.method} {r.path}: {status}"


def _error_pairs(doc: dict[str, Any]) -> set[tuple[str, int]]:
    shared = doc["components"]["responses"]
    pairs = set()
    for op in _operations(doc).values():
        for status, answer in op["responses"].items():
            if "$ref" in answer:
                answer = shared[answer["$ref"].rsplit("/", 1)[1]]
            schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
            for s in schema.get("anyOf", [schema]):
                for code in s.get("properties", {}).get("error", {}).get("enum", []):
                    pairs.add((code, int(status)))
    return pairs


def test_the_errors_in_the_document_are_ones_the_server_gives() -> None:
    given = given_errors() | {("no_leader", 307)}  # a follower's 307 carries no_leader
    pairs = _error_pairs(oa.openapi_document())
    assert pairs, "no error answers found in the document"
    assert not pairs - given, f"the server gives no such errors: {sorted(pairs - given)}"


def test_docs_openapi_json_is_up_to_date() -> None:
    assert DOC.read_bytes() == oa.document_bytes(), (
        "docs/openapi.json is out of date: python -m tqd.http.openapi > docs/openapi.json")


def test_the_entry_point_prints_the_document() -> None:
    out = subprocess.run([sys.executable, "-m", "tqd.http.openapi"], capture_output=True,
                         check=True, cwd=ROOT, timeout=60).stdout
    assert out == oa.document_bytes()


def test_docs_openapi_json_and_protocol_md_name_the_same_routes() -> None:
    in_openapi = set(_operations(json.loads(DOC.read_text(encoding="utf-8"))))
    in_protocol = set(HEADING.findall(PROTOCOL.read_text(encoding="utf-8")))
    if SELF not in _served():  # until app.py serves it, protocol.md need not have it
        in_openapi.discard(SELF)
    assert in_openapi - in_protocol == set(), "in docs/openapi.json, no heading in docs/protocol.md"
    assert in_protocol - in_openapi == set(), "a heading in docs/protocol.md, not in docs/openapi.json"


def test_the_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(json.loads(DOC.read_text(encoding="utf-8")))


async def test_the_handler_serves_the_document() -> None:
    app = web.Application()
    app.router.add_get(oa.OPENAPI_PATH, oa.openapi)
    async with TestClient(TestServer(app)) as client:
        r = await client.get(oa.OPENAPI_PATH)
        assert r.status == 200 and r.content_type == "application/json"
        assert await r.json() == json.loads(DOC.read_text(encoding="utf-8"))
