"""Tokens, roles and queue globs against a real `tqd serve --auth FILE` (PROTOCOL.md "Auth").

The rights below are PROTOCOL.md's, written out by hand, not read from the route table: a
new route fails test_each_role_against_each_route until it is placed here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _http import _UNSET, NDJSON, Api, Resp
from conftest import ServerProcess

from tqd.auth import tokens
from tqd.http.app import ROUTES

ROLES = ("admin", "producer", "worker", "viewer")
ALL = set(ROLES)
OPEN = "open"  # no token needed
# PROTOCOL.md: admin everything; producer enqueue and read; worker lease, ack, fail,
# heartbeat, bulk ack and read; viewer read; managing calls are admin's; the replication
# endpoints take the cluster token only; /healthz and /readyz are open. Release (giving back
# a lease one holds) is a worker's call, like fail.
MAY: dict[tuple[str, str], set[str] | str] = {
    ("POST", "/v1/queues/{queue}/jobs"): {"admin", "producer"},
    ("GET", "/v1/queues/{queue}/jobs"): ALL,
    ("DELETE", "/v1/queues/{queue}/jobs"): {"admin"},  # purge
    ("GET", "/v1/queues"): ALL,
    ("GET", "/v1/queues/{queue}"): ALL,
    ("DELETE", "/v1/queues/{queue}"): {"admin"},
    ("POST", "/v1/queues/{queue}/pause"): {"admin"},
    ("POST", "/v1/queues/{queue}/resume"): {"admin"},
    ("POST", "/v1/queues/{queue}/redrive"): {"admin"},
    ("POST", "/v1/lease"): {"admin", "worker"},
    ("POST", "/v1/ack"): {"admin", "worker"},
    ("GET", "/v1/jobs/{id}"): ALL,
    ("DELETE", "/v1/jobs/{id}"): {"admin"},  # cancel
    ("POST", "/v1/jobs/{id}/ack"): {"admin", "worker"},
    ("POST", "/v1/jobs/{id}/fail"): {"admin", "worker"},
    ("POST", "/v1/jobs/{id}/heartbeat"): {"admin", "worker"},
    ("POST", "/v1/jobs/{id}/release"): {"admin", "worker"},
    ("POST", "/v1/jobs/{id}/retry"): {"admin"},
    ("GET", "/v1/cluster"): ALL,
    ("GET", "/v1/events"): ALL,
    ("GET", "/v1/history"): ALL,
    ("GET", "/v1/_repl/log"): set(),
    ("GET", "/v1/_repl/snapshot"): set(),
    ("GET", "/healthz"): OPEN,
    ("GET", "/metrics"): OPEN,  # unless --metrics-auth (tests/test_metrics.py)
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/ui"): OPEN,  # the dashboard's files hold no data; its API calls need a token
    ("GET", "/ui/"): OPEN,
    ("GET", "/ui/{file}"): OPEN,
    ("GET", "/readyz"): OPEN,
}
BODIES: dict[str, Any] = {
    "/v1/queues/{queue}/jobs": {"payload": 1}, "/v1/queues/{queue}/redrive": {},
    "/v1/lease": {"queues": ["tq"], "max": 1}, "/v1/jobs/{id}/ack": {"lease": "nope"},
    "/v1/jobs/{id}/fail": {"lease": "nope", "error": "x"}, "/v1/jobs/{id}/heartbeat": {"lease": "nope"},
    "/v1/jobs/{id}/release": {"lease": "nope"},
}
GLOBS = {"w-emails": ("worker", ["emails*", "reports"]), "v-emails": ("viewer", ["emails*"]),
         "a-emails": ("admin", ["emails*"]), "p-emails": ("producer", ["emails*"])}


class TokenApi(Api):
    """Api with `Authorization: Bearer <token>` on every request (none if token is None)."""

    def __init__(self, url: str, token: str | None) -> None:
        super().__init__(url)
        self.token = token

    def request(self, method: str, path: str, body: Any = _UNSET, *, headers: dict[str, str] | None = None,
                **kw: Any) -> Resp:
        h = dict(headers or {})
        if self.token is not None:
            h.setdefault("Authorization", f"Bearer {self.token}")
        return super().request(method, path, body, headers=h, **kw)


def make_tokens(path: Path, spec: dict[str, tuple[str, list[str]]]) -> dict[str, str]:
    return {name: tokens.create(path, name, role, globs)[0] for name, (role, globs) in spec.items()}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    d = tmp_path_factory.mktemp("auth")
    toks = make_tokens(d / "tokens.toml", {**{r: (r, ["*"]) for r in ROLES}, **GLOBS})
    s = ServerProcess(d / "data", "--auth", str(d / "tokens.toml")).start()
    yield s, toks
    rc = s.stop()
    assert rc == 0 and b"Traceback" not in s.log, s.log.decode(errors="replace")


def _call(api: Api, method: str, path: str, jid: str) -> Resp:
    url = path.replace("{queue}", "tq").replace("{id}", jid).replace("{file}", "app.js")
    if path == "/v1/ack":
        line = json.dumps({"id": jid, "lease": "nope"}).encode() + b"\n"
        return api.request(method, url, raw=line, ctype=NDJSON)
    if path == "/v1/events":
        url += "?timeout=0.1"  # a stream: ended soon
    if path.startswith("/v1/_repl/"):
        url += "?after=0&term=0&node=x"
    if path == "/v1/queues/{queue}/jobs" and method == "DELETE":
        url += "?state=dead"
    body = BODIES.get(path, _UNSET) if method == "POST" else _UNSET
    return api.request(method, url, body)


def test_each_role_against_each_route(srv: tuple[ServerProcess, dict[str, str]]) -> None:
    s, toks = srv
    assert {(r.method, r.path) for r in ROUTES} == set(MAY), "place every route in MAY"
    jid = TokenApi(s.url, toks["admin"]).enqueue_ok("tq", {"payload": 0})
    wrong = []
    for r in ROUTES:
        may = MAY[(r.method, r.path)]
        for role in (*ROLES, None):
            resp = _call(TokenApi(s.url, toks[role] if role else None), r.method, r.path, jid)
            if may == OPEN:
                ok = resp.status == 200
            elif role is None:
                ok = resp.status == 401 and resp.json()["error"] == "unauthorized" \
                    and resp.headers["WWW-Authenticate"].startswith("Bearer")
            elif role in may:  # allowed: any answer but a refusal (409 lease_lost is fine)
                ok = resp.status not in (401, 403) and not (r.path.startswith("/v1/jobs/") and resp.status == 404)
            else:
                ok = resp.status == 403 and resp.json()["error"] == "forbidden"
            if not ok:
                wrong.append((r.method, r.path, role, resp.status, resp.body[:200]))
    assert not wrong, "\n".join(map(str, wrong))


def test_wrong_malformed_and_missing_tokens_are_401(srv: tuple[ServerProcess, dict[str, str]]) -> None:
    s, toks = srv
    good = toks["viewer"]
    for header in ("", f"Bearer {good[:-1]}x", f"Bearer tqd_00000000_{good[13:]}", "Bearer nonsense",
                   f"Basic {good}", "Bearer", f"bearer {good}x"):
        r = Api(s.url).request("GET", "/v1/queues", headers={"Authorization": header} if header else {})
        assert r.status == 401, (header, r)
        assert r.json()["error"] == "unauthorized" and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert Api(s.url).request("GET", "/v1/queues", headers={"Authorization": f"bearer  {good} "}).status == 200
    # a refusal comes before the body is asked for (Expect: 100-continue)
    r = Api(s.url).request("POST", "/v1/queues/tq/jobs", {"payload": 1}, headers={"Expect": "100-continue"})
    assert r.status == 401, r


def test_queue_globs(srv: tuple[ServerProcess, dict[str, str]]) -> None:
    s, toks = srv
    admin, w, v, p = (TokenApi(s.url, toks[n]) for n in ("admin", "w-emails", "v-emails", "p-emails"))
    other = admin.enqueue_ok("other", {"payload": "secret"})
    mine = admin.enqueue_ok("emails.eu", {"payload": 1})
    # the queue of the path
    assert p.enqueue("emails.us", {"payload": 1}).status == 201
    r = p.enqueue("other", {"payload": 1})
    assert r.status == 403 and r.json()["error"] == "forbidden", r
    assert v.request("GET", "/v1/queues/other").status == 403
    assert v.request("GET", "/v1/queues/other/jobs").status == 403
    assert v.request("GET", "/v1/queues/emails.eu").status == 200
    assert TokenApi(s.url, toks["a-emails"]).request("POST", "/v1/queues/other/pause").status == 403
    # a job outside the globs answers as a missing job would: its queue, its existence unsaid
    r, missing = v.request("GET", f"/v1/jobs/{other}"), v.request("GET", "/v1/jobs/zz0000000000000000")
    assert (r.status, r.json()["error"]) == (missing.status, missing.json()["error"]) == (404, "not_found")
    assert b"other" not in r.body and b"secret" not in r.body
    assert w.request("POST", f"/v1/jobs/{other}/ack", {"lease": "x"}).status == 404
    assert v.request("GET", f"/v1/jobs/{mine}").json()["payload"] == 1
    # a lease naming a forbidden queue is refused as a whole, and leases nothing
    r = w.lease(["emails.eu", "other"])
    assert r.status == 403 and "other" in r.json()["message"], r
    assert admin.job(mine)["state"] == "queued" and admin.job(other)["state"] == "queued"
    # a bulk ack line for a job outside the globs fails that line; the others go on
    leased = {j["id"]: j["lease"] for j in admin.lease_jobs(["other", "emails.eu"], max=2)}
    assert set(leased) == {other, mine}
    lines = b"".join(json.dumps({"id": j, "lease": leased[j]}).encode() + b"\n" for j in (other, mine))
    r = w.request("POST", "/v1/ack", raw=lines, ctype=NDJSON)
    assert r.status == 200 and r.lines() == [
        {"id": other, "ok": False, "error": "not_found"}, {"id": mine, "ok": True}], r
    assert admin.job(other)["state"] == "active" and admin.job(mine)["state"] == "completed"


def test_queue_list_is_filtered(srv: tuple[ServerProcess, dict[str, str]]) -> None:
    s, toks = srv
    admin, v = TokenApi(s.url, toks["admin"]), TokenApi(s.url, toks["v-emails"])
    for q in ("a1", "emails.x", "b2", "emails.y", "zz", "emails.z"):
        admin.enqueue_ok(q)
    names = {q["name"] for q in admin.request("GET", "/v1/queues").json()["queues"]}
    assert {"a1", "b2", "zz", "emails.x"} <= names
    page = v.request("GET", "/v1/queues").json()
    assert all(q["name"].startswith("emails") for q in page["queues"]) and page["next"] is None
    seen, after = [], ""
    for _ in range(20):  # a page at a time: the same queues, none outside the globs
        page = v.request("GET", f"/v1/queues?limit=1&after={after}").json()
        seen += [q["name"] for q in page["queues"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == sorted(q["name"] for q in v.request("GET", "/v1/queues").json()["queues"])
    assert {"emails.x", "emails.y", "emails.z"} <= set(seen)


def _audit(log: bytes) -> list[dict[str, Any]]:
    return [json.loads(line.split(b"tqd.audit: ", 1)[1]) for line in log.splitlines()
            if b" tqd.audit: " in line]


def _wait_status(api: Api, path: str, status: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (r := api.request("GET", path)).status != status:
        assert time.monotonic() < deadline, r
        time.sleep(0.05)


def test_revoke_and_reload_on_sighup_and_audit(server_factory: type[ServerProcess], tmp_path: Path) -> None:
    f = tmp_path / "tokens.toml"
    run = [sys.executable, "-m", "tqd", "token"]
    out = subprocess.run([*run, "create", "--auth", str(f), "--name", "ops", "--role", "admin"],
                         capture_output=True, text=True, check=True)
    admin = out.stdout.strip()
    assert out.stdout == admin + "\n" and admin.startswith("tqd_") and '"token_create"' in out.stderr
    ci = tokens.create(f, "ci", "worker", ["emails*"])[0]
    s = server_factory(tmp_path / "data", "--auth", str(f)).start()
    a, w = TokenApi(s.url, admin), TokenApi(s.url, ci)
    assert w.request("GET", "/v1/queues").status == 200
    r = subprocess.run([*run, "revoke", "--auth", str(f), "ci"], capture_output=True, text=True)
    assert r.returncode == 0 and '"token_revoke"' in r.stderr, r.stderr
    assert "ci" not in subprocess.run([*run, "list", "--auth", str(f)], capture_output=True,
                                      text=True, check=True).stdout
    assert s.proc is not None
    s.proc.send_signal(signal.SIGHUP)
    _wait_status(w, "/v1/queues", 401)
    # a bad file on reload: the tokens in force stay, and the error is logged
    good = f.read_text()
    f.write_text("[[token]]\nname = 1\n")
    s.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert a.request("GET", "/v1/queues").status == 200
    f.write_text(good)
    # audit: a managing call, with its caller, and a denial
    assert a.request("POST", "/v1/queues/emails/pause").status == 200
    assert TokenApi(s.url, "tqd_nope").request("DELETE", "/v1/queues/emails").status == 401
    assert s.stop() == 0
    lines = _audit(s.log)
    pause = [x for x in lines if x["audit"] == "pause"]
    assert pause and pause[0]["who"] == "ops" and pause[0]["outcome"] == "ok" and pause[0]["from"] == "127.0.0.1"
    assert pause[0]["path"] == "/v1/queues/emails/pause" and pause[0]["at"].endswith("Z")
    denied = [x for x in lines if x["audit"] == "denied" and x["method"] == "DELETE"]
    assert denied and denied[0]["outcome"] == "unauthorized" and denied[0]["who"] is None
    assert b"reload refused" in s.log


def test_token_file_holds_hashes_only(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    toks = make_tokens(f, {"a": ("admin", ["*"]), "b": ("viewer", ["x?", "y*"])})
    text = f.read_text()
    assert os.stat(f).st_mode & 0o777 == 0o600
    for t in toks.values():
        assert t.startswith("tqd_") and len(t) > 40
        assert t not in text and t.rsplit("_", 1)[-1][-20:] not in text
    entries = tokens.parse(text)
    assert [e.name for e in entries] == ["a", "b"] and entries[1].queues == ["x?", "y*"]
    assert tokens.verify(toks["b"], entries[1].hash) and not tokens.verify(toks["a"], entries[1].hash)
    with pytest.raises(ValueError, match="exists"):
        tokens.create(f, "a", "viewer", ["*"])


@pytest.mark.parametrize("content,message", [
    (None, "cannot read the token file"),
    ('[[token]]\nname = "x"\nrole = "king"\n', "token file"),
    ("not toml [", "token file"),
])
def test_a_bad_token_file_at_start_exits_2(tmp_path: Path, content: str | None, message: str) -> None:
    f = tmp_path / "t.toml"
    if content is not None:
        f.write_text(content)
    r = subprocess.run([sys.executable, "-m", "tqd", "serve", "--auth", str(f), "--data",
                        str(tmp_path / "d"), "--port", "0"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and message in r.stderr and "bad setting" in r.stderr, r.stderr


def test_client_worker_and_cli_send_the_token(srv: tuple[ServerProcess, dict[str, str]]) -> None:
    from tqd.client.api import SyncClient

    s, toks = srv
    with SyncClient(s.url, token=toks["w-emails"]) as c:
        c.lease(["emails.cli"], wait=0)  # allowed: nothing there yet
    env = {**os.environ, "TQD_URL": s.url, "TQD_TOKEN": toks["p-emails"]}
    r = subprocess.run([sys.executable, "-m", "tqd", "enqueue", "emails.cli", '{"n": 1}'],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "tqd", "enqueue", "other", '{"n": 1}'],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 1 and "forbidden" in r.stderr, r.stderr
    env["TQD_TOKEN"] = "tqd_00000000_nope"
    r = subprocess.run([sys.executable, "-m", "tqd", "queues"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 1 and "unauthorized" in r.stderr, r.stderr


async def test_worker_sends_its_token(srv: tuple[ServerProcess, dict[str, str]]) -> None:
    from tqd import Client, Forbidden, Worker

    s, toks = srv
    async with Client(s.url, token=toks["p-emails"]) as producer:
        jid = (await producer.enqueue("emails.w", "add", {"a": 1, "b": 2})).id
        with pytest.raises(Forbidden):
            await producer.enqueue("other", "add", {})
    w = Worker(s.url, queues=["emails.w"], burst=True, burst_wait_s=0.5, token=toks["w-emails"])

    @w.task("add")
    async def add(job: Any) -> int:
        return int(job.payload["a"] + job.payload["b"])

    await w.run()
    assert w.jobs_done == 1
    async with Client(s.url, token=toks["v-emails"]) as viewer:
        job = await viewer.get(jid)
        assert job.state == "completed" and job.result == 3


def test_every_route_says_who_may_call_it_and_where_its_queue_is() -> None:
    """The need column: a right for every route, and the queue taken from where it is."""
    from tqd.auth.policy import Need, Right, Scope

    for r in ROUTES:
        assert isinstance(r.need, Need), r.path
        if "{queue}" in r.path:
            assert r.need.scope is Scope.PATH, r.path
        elif "{id}" in r.path:
            assert r.need.scope is Scope.JOB, r.path
        elif r.need.right in (Right.OPEN, Right.CLUSTER):
            assert r.need.scope is Scope.NONE, r.path
    # the routes whose handler checks the queues it reads
    assert {r.path for r in ROUTES if r.need.scope is Scope.BODY} == {
        "/v1/lease", "/v1/ack", "/v1/queues", "/v1/events", "/v1/history"}
