"""Logs (tqd.observe.logs): `--log-format text|json`, `--log-level`, the request line at debug
(tqd.http.access), the audit log in json, the writer process's lines, the worker's job lines
(tqd.client.joblog) — against the real `tqd serve` and `tqd worker`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _http import Api
from conftest import ServerProcess

from tqd import Client, JobContext, Worker
from tqd.auth import tokens
from tqd.observe import logs

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def json_lines(stderr: bytes | str) -> list[dict[str, Any]]:
    """Every line of stderr as a JSON object with the four first keys (else the test fails)."""
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\n--- all:\n{text}")
        assert isinstance(obj, dict) and list(obj)[:4] == ["ts", "level", "logger", "msg"], line
        assert TS.fullmatch(obj["ts"]) and obj["level"] in ("debug", "info", "warning", "error",
                                                           "critical"), line
        out.append(obj)
    return out


def test_json_server_log_with_a_line_per_request(server_factory: type[ServerProcess],
                                                  tmp_path: Path) -> None:
    f = tmp_path / "tokens.toml"
    admin = tokens.create(f, "ops", "admin", ["*"])[0]
    s = server_factory(tmp_path / "data", "--log-format", "json", "--log-level", "debug",
                       "--auth", str(f)).start()
    api = Api(s.url)
    auth = {"Authorization": f"Bearer {admin}"}
    assert api.request("POST", "/v1/queues/mail/jobs", {"payload": 1}, headers=auth).status == 201
    assert api.request("GET", "/v1/nothing/here", headers=auth).status == 404
    assert api.request("POST", "/v1/queues/mail/pause", headers=auth).status == 200
    assert api.request("DELETE", "/v1/queues/mail").status == 401  # no token: a denial
    assert s.stop() == 0
    lines = json_lines(s.log)
    assert [x["msg"] for x in lines if x["logger"] == "tqd"][-2:] == ["tqd draining", "tqd stopped"]
    banner = [x for x in lines if "listening on" in x["msg"]]
    assert len(banner) == 1 and banner[0]["url"] == s.url and banner[0]["logger"] == "tqd"

    access = [x for x in lines if x["logger"] == "tqd.access"]
    enq = [x for x in access if x["method"] == "POST" and x["path"] == "/v1/queues/mail/jobs"]
    assert len(enq) == 1, access
    assert enq[0]["route"] == "/v1/queues/{queue}/jobs" and enq[0]["status"] == 201, enq
    assert enq[0]["level"] == "debug" and enq[0]["token"] == "ops" and enq[0]["remote"] == "127.0.0.1"
    assert isinstance(enq[0]["ms"], (int, float)) and enq[0]["ms"] >= 0
    nothing = [x for x in access if x["path"] == "/v1/nothing/here"]
    assert nothing and nothing[0]["route"] == "(no route)" and nothing[0]["status"] == 404
    denied = [x for x in access if x["method"] == "DELETE"]
    assert denied and denied[0]["status"] == 401 and denied[0]["token"] is None
    assert admin not in s.log.decode()  # a token is never logged

    audit = [x for x in lines if x["logger"] == "tqd.audit"]  # its fields are the line's own
    pause = [x for x in audit if x.get("audit") == "pause"]
    assert pause and pause[0]["msg"] == "pause ok" and pause[0]["who"] == "ops", audit
    assert pause[0]["from"] == "127.0.0.1" and pause[0]["path"] == "/v1/queues/mail/pause"
    no = [x for x in audit if x.get("audit") == "denied"]
    assert no and no[0]["outcome"] == "unauthorized" and no[0]["method"] == "DELETE", audit


def test_no_request_lines_above_debug(server_factory: type[ServerProcess], tmp_path: Path) -> None:
    s = server_factory(tmp_path / "data", env={"TQD_LOG_FORMAT": "json"}).start()  # level info
    api = Api(s.url)
    assert api.request("POST", "/v1/queues/q/jobs", {"payload": 1}).status == 201
    assert api.request("POST", "/v1/queues/q/pause").status == 200
    assert s.stop() == 0
    lines = json_lines(s.log)
    assert not [x for x in lines if x["logger"] == "tqd.access"], lines
    assert [x["audit"] for x in lines if x["logger"] == "tqd.audit"] == ["pause"]


def test_text_is_the_default(server_factory: type[ServerProcess], tmp_path: Path) -> None:
    s = server_factory(tmp_path / "data", "--log-level", "debug").start()
    assert Api(s.url).request("POST", "/v1/queues/q/pause").status == 200
    assert s.stop() == 0
    text = s.log.decode()
    assert re.search(r"^\S+ \S+ INFO tqd: tqd \S+ listening on http://", text, re.M), text
    assert re.search(r"DEBUG tqd.access: POST /v1/queues/q/pause 200 [\d.]+ms from 127.0.0.1$",
                     text, re.M), text
    audit = re.search(r" INFO tqd.audit: (\{.*\})$", text, re.M)  # the audit line is JSON in text
    assert audit and json.loads(audit.group(1))["audit"] == "pause", text


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--log-level", "loud"], {}, "log_level must be one of debug, info, warning, error, got 'loud'"),
    ([], {"TQD_LOG_FORMAT": "xml"}, "log_format must be text or json, got 'xml'"),
])
def test_a_bad_log_setting_stops_the_server_at_start(tmp_path: Path, args: list[str],
                                                     env: dict[str, str], message: str) -> None:
    r = subprocess.run([sys.executable, "-m", "tqd", "serve", "--port", "0", "--data",
                        str(tmp_path / "data"), *args], capture_output=True, text=True, timeout=30,
                       env={**os.environ, **env})
    assert r.returncode == 2 and r.stderr == f"tqd: bad setting: {message}\n", r.stderr


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--log-format", "json", "--log-level", "loud"], {},
     "log_level must be one of debug, info, warning, error, got 'loud'"),
    (["--auth", "missing.toml"], {"TQD_LOG_FORMAT": "json"}, "cannot read the token file"),
    (["--log-format", "json", "--encryption-key-file", "missing.json"], {}, "missing.json"),
    (["--log-format", "json", "--tls-cert", "missing.pem", "--tls-key", "missing.pem"], {}, "missing.pem"),
    (["--log-format", "json", "--lease-store", "ftp://nowhere"], {}, "lease_store"),
])
def test_with_json_logs_a_bad_setting_is_a_line_of_the_log(tmp_path: Path, args: list[str],
                                                            env: dict[str, str], message: str) -> None:
    r = subprocess.run([sys.executable, "-m", "tqd", "serve", "--port", "0", "--data",
                        str(tmp_path / "data"), *args], capture_output=True, text=True, timeout=30,
                       env={**os.environ, **env}, cwd=tmp_path)
    lines = json_lines(r.stderr)
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0]["level"] == "critical" and lines[0]["logger"] == "tqd", lines
    assert lines[0]["msg"].startswith("bad setting: ") and message in lines[0]["msg"], lines


def test_the_writer_process_logs_json_too(tmp_path: Path) -> None:
    """A store that cannot be opened: the writer process says why (with its traceback) in the
    same format, and the server's last word is a line of the log as well."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "lmdb").write_text("not a directory")
    r = subprocess.run([sys.executable, "-m", "tqd", "serve", "--port", "0", "--data", str(data),
                        "--log-format", "json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    lines = json_lines(r.stderr)
    failed = [x for x in lines if x["logger"] == "tqd.writer"]
    assert failed and failed[0]["msg"] == "writer process failed" and "Traceback" in failed[0]["exc"]
    assert lines[-1]["level"] == "critical" and "could not open the store" in lines[-1]["msg"], lines


# ---- the worker -------------------------------------------------------------------------------

TASKS = textwrap.dedent("""
    from tqd import Fatal, Worker

    worker = Worker(queues=["logs"], concurrency=1)

    @worker.task("ok")
    async def ok(job):
        return {"got": job.payload}

    @worker.task("flaky")
    def flaky(job):
        if job.attempt == 1:
            raise ValueError("not yet")
        return "fine"

    @worker.task("bad")
    async def bad(job):
        raise Fatal("never")
""")


def test_worker_cli_logs_each_job_event_as_json(server_factory: type[ServerProcess],
                                                tmp_path: Path) -> None:
    s = server_factory(tmp_path / "data", "--backoff-base-s", "0").start()
    (tmp_path / "tasks.py").write_text(TASKS)
    env = {**os.environ, "TQD_URL": s.url, "TQD_LOG_FORMAT": "json"}
    ids = {}
    for kind in ("ok", "flaky", "bad"):
        out = subprocess.run([sys.executable, "-m", "tqd", "enqueue", "logs", "--type", kind, "7"],
                             capture_output=True, text=True, env=env, check=True)
        ids[kind] = json.loads(out.stdout)["id"]
    r = subprocess.run([sys.executable, "-m", "tqd", "worker", "tasks:worker", "--burst"],
                       cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert s.stop() == 0
    events = [(x["event"], x["job"], x["attempt"]) for x in json_lines(r.stderr) if "event" in x]
    by = {x["job"] + x["event"] + str(x["attempt"]): x for x in json_lines(r.stderr) if "event" in x}
    assert ("started", ids["ok"], 1) in events and ("completed", ids["ok"], 1) in events
    assert [e for e in events if e[1] == ids["flaky"]] == [
        ("started", ids["flaky"], 1), ("failed", ids["flaky"], 1),
        ("started", ids["flaky"], 2), ("completed", ids["flaky"], 2)]
    assert [e for e in events if e[1] == ids["bad"]] == [("started", ids["bad"], 1),
                                                         ("failed", ids["bad"], 1)]
    start = by[ids["ok"] + "started1"]
    assert (start["queue"], start["type"], start["max_attempts"], start["level"]) == ("logs", "ok", 10, "info")
    done = by[ids["ok"] + "completed1"]
    assert done["ms"] >= 0 and done["msg"].endswith('● {"got":7}'), done
    retry = by[ids["flaky"] + "failed1"]
    assert retry["retry"] is True and retry["error"] == "ValueError: not yet" and retry["level"] == "warning"
    dead = by[ids["bad"] + "failed1"]
    assert dead["retry"] is False and dead["error"] == "Fatal: never" and dead["level"] == "error"


def test_worker_cli_refuses_a_bad_log_level(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "tqd", "worker", "tasks:worker"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=30,
                       env={**os.environ, "TQD_LOG_LEVEL": "chatty"})
    assert r.returncode == 1 and "log_level must be one of" in r.stderr, r.stderr


async def test_worker_logs_cancelled_and_released_jobs(server_factory: type[ServerProcess],
                                                       tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "tqd.worker")
    s = server_factory(tmp_path / "data").start()
    w = Worker(s.url, queues=["c"], concurrency=2, grace_s=0)
    running: set[str] = set()

    @w.task("wait")
    async def wait(job: JobContext) -> None:
        running.add(job.id)
        await asyncio.sleep(60)

    async with Client(s.url) as c:
        a = await c.enqueue("c", "wait", None, timeout=1)
        b = await c.enqueue("c", "wait", None, timeout=30)
        runner = asyncio.create_task(w.run())
        while running != {a.id, b.id}:
            await asyncio.sleep(0.02)
        await c.cancel(a.id)  # seen at a's next heartbeat, within a third of a second
        while not any(getattr(r, "event", None) == "cancelled" for r in caplog.records):
            await asyncio.sleep(0.02)
        w.stop()
        await runner
        assert (await c.get(b.id)).state == "queued"
    assert s.stop() == 0
    ev = [r for r in caplog.records if hasattr(r, "event")]
    cancelled = [r for r in ev if (r.event, r.job) == ("cancelled", a.id)]
    assert len(cancelled) == 1 and cancelled[0].reason == "cancelled"
    assert cancelled[0].getMessage().endswith("stopped: cancelled")
    # b is handed back; the lease request in flight may bring it again, and hands it back unstarted
    released = [r for r in ev if (r.event, r.job) == ("released", b.id)]
    assert released and released[0].queue == "c" and released[0].reason == "worker shutdown"
    assert released[0].ms > 0 and released[0].levelname == "WARNING"


# ---- the formatter ----------------------------------------------------------------------------


def _record(msg: Any, *args: Any, exc: bool = False, **extra: Any) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            info = sys.exc_info()
    r = logging.LogRecord("tqd.x", logging.WARNING, __file__, 1, msg, args or None, info)
    r.__dict__.update(extra)
    return r


def test_json_formatter_fields_and_exceptions() -> None:
    fmt = logs.JsonFormatter()
    line = json.loads(fmt.format(_record("  %s done  ", "job", queue="q", path=Path("/x"),
                                         msg_extra=None, exc=True)))
    assert list(line)[:4] == ["ts", "level", "logger", "msg"] and TS.fullmatch(line["ts"])
    assert (line["level"], line["logger"], line["msg"]) == ("warning", "tqd.x", "job done")
    assert line["queue"] == "q" and line["path"] == "/x" and line["msg_extra"] is None
    assert line["exc"].startswith("Traceback") and "RuntimeError: boom" in line["exc"]
    # a field never takes the place of the first four; what JSON has no type for is its str()
    line = json.loads(fmt.format(_record("m", ts="no", weird={(1, 2): 3}, n=float("nan"))))
    assert line["ts"] != "no" and line["weird"] == {"(1, 2)": 3} and line["n"] is None
    line = json.loads(fmt.format(_record("m", bad=_Unprintable(), ok=[1], exc=True)))
    assert line["bad"] == "<unprintable _Unprintable>" and line["ok"] == [1]  # one odd field
    assert line["exc"].startswith("Traceback")  # does not cost the others


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_fields_are_json_text_or_top_level_keys() -> None:
    rec = _record(logs.Fields("cancel ok", {"audit": "cancel", "from": "10.0.0.7", "name": "x"}))
    assert rec.getMessage() == '{"audit": "cancel", "from": "10.0.0.7", "name": "x"}'
    line = json.loads(logs.JsonFormatter().format(rec))
    assert line["msg"] == "cancel ok" and line["from"] == "10.0.0.7" and line["name"] == "x"
    assert line["logger"] == "tqd.x"
