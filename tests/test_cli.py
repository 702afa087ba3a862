"""The client commands of `tqd`, run as subprocesses against the real server."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ServerProcess


def tqd(server: ServerProcess | None, *args: str, cwd: Path | None = None,
        url: str | None = None, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TQD_URL": url or (server.url if server else ""), "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "tqd", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=60)


def ok(server: ServerProcess, *args: str, cwd: Path | None = None) -> str:
    r = tqd(server, *args, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_enqueue_inspect_and_manage(server: ServerProcess) -> None:
    out = ok(server, "enqueue", "mail", "--type", "send_email", "--priority", "high", "--key", "k1",
             '{"to": "a@example.com"}')
    first = json.loads(out)
    assert first["created"] is True and first["state"] == "queued"
    again = json.loads(ok(server, "enqueue", "mail", "-t", "send_email", "--key", "k1", "{}"))
    assert again == {**first, "created": False}
    assert json.loads(ok(server, "enqueue", "mail", "--delay", "600", "1"))["state"] == "scheduled"

    job = json.loads(ok(server, "job", first["id"], "--json"))
    assert (job["type"], job["priority"], job["payload"]) == ("send_email", 7, {"to": "a@example.com"})
    shown = ok(server, "job", first["id"])
    assert "send_email" in shown and "a@example.com" in shown

    table = ok(server, "queues")
    assert "mail" in table and "queued" in table
    stats = json.loads(ok(server, "queues", "--json"))
    assert stats[0]["name"] == "mail" and stats[0]["queued"] == 1 and stats[0]["scheduled"] == 1

    listed = [json.loads(ln) for ln in ok(server, "jobs", "mail", "--json").splitlines()]
    assert [j["state"] for j in listed] == ["queued", "scheduled"]
    assert first["id"][:8] in ok(server, "jobs", "mail", "--state", "queued", "--limit", "5")

    assert "paused" in ok(server, "pause", "mail")
    assert json.loads(ok(server, "queues", "--json"))[0]["paused"] is True
    assert "resumed" in ok(server, "resume", "mail")

    assert "cancelled" in ok(server, "cancel", first["id"])
    assert "queued" in ok(server, "retry", first["id"])
    assert "0 dead" in ok(server, "redrive", "mail")
    ok(server, "cancel", first["id"])
    assert "1 cancelled job(s) deleted" in ok(server, "purge", "mail", "--state", "cancelled")


def test_enqueue_file_with_progress(server: ServerProcess, tmp_path: Path) -> None:
    f = tmp_path / "jobs.ndjson"
    f.write_text("".join(json.dumps({"type": "t", "payload": i}) + "\n" for i in range(2500)))
    out = ok(server, "enqueue", "bulk", "--file", str(f), "--chunk", "1000")
    assert "2500 jobs: 2500 created" in out
    assert json.loads(ok(server, "queues", "--json"))[0]["queued"] == 2500


def test_errors_are_one_line_and_nonzero(server: ServerProcess) -> None:
    r = tqd(server, "job", "no-such-id")
    assert r.returncode == 1 and r.stderr.startswith("tqd: not_found: ") and r.stderr.count("\n") == 1
    r = tqd(server, "enqueue", "q", "{not json")
    assert r.returncode == 1 and "not JSON" in r.stderr and "Traceback" not in r.stderr
    r = tqd(server, "enqueue", "q", "--priority", "12", "1")
    assert r.returncode == 1 and r.stderr.startswith("tqd: invalid_job")
    r = tqd(None, "queues", url="http://127.0.0.1:1")  # nothing listens there
    assert r.returncode == 3, r.stderr  # 3: no answer from the server (1: the server said no)
    assert r.stderr.startswith("tqd: cannot connect to http://127.0.0.1:1") and r.stderr.count("\n") == 1
    r = tqd(None, "queues", url="ftp://127.0.0.1:1")
    assert r.returncode == 1 and r.stderr.startswith("tqd: bad server URL") and r.stderr.count("\n") == 1
    r = tqd(server, "purge", "q")  # --state is required
    assert r.returncode == 2


def test_worker_command_burst(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "clitasks.py").write_text(textwrap.dedent("""
        from tqd import Worker, Fatal

        worker = Worker(queues=["nothing-here"])

        @worker.task("double")
        def double(job):
            return job.payload * 2

        @worker.task("bad")
        async def bad(job):
            raise Fatal("no way")
    """))
    a = json.loads(ok(server, "enqueue", "w1", "-t", "double", "21"))
    b = json.loads(ok(server, "enqueue", "w2", "-t", "bad", "0"))
    r = tqd(server, "worker", "clitasks:worker", "--queues", "w1,w2", "--burst", "--concurrency", "2",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "→" in r.stderr and "←" in r.stderr and "✗" in r.stderr  # one line per job event
    assert json.loads(ok(server, "job", a["id"], "--json"))["result"] == 42
    assert json.loads(ok(server, "job", b["id"], "--json"))["state"] == "dead"
    r = tqd(server, "worker", "clitasks:nope", cwd=tmp_path)
    assert r.returncode == 1 and "cannot load" in r.stderr


def test_version() -> None:
    r = tqd(None, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"tqd {importlib.metadata.version('tqd')}"


def test_url_without_scheme_means_http(server: ServerProcess) -> None:
    bare = server.url.removeprefix("http://")  # 127.0.0.1:PORT
    r = tqd(None, "enqueue", "bare", "1", "--url", bare)
    assert r.returncode == 0, r.stderr
    assert json.loads(ok(server, "queues", "--json"))[0]["queued"] == 1


def test_jobs_table_shows_full_ids(server: ServerProcess) -> None:
    from tqd import SyncClient

    gen = json.loads(ok(server, "enqueue", "ids", "-t", "send_email_to_customer", "1"))["id"]
    mine = "invoice-2024-06-acme-corporation-0001"
    with SyncClient(server.url) as c:
        c.enqueue("ids", "render_pdf", 2, id=mine)
    r = tqd(server, "jobs", "ids", columns=80)  # a narrow terminal: the other columns give way
    assert r.returncode == 0, r.stderr
    assert gen in r.stdout and mine in r.stdout, r.stdout
    pasted = [w for ln in r.stdout.splitlines() for w in ln.split() if w in (gen, mine)]
    assert pasted == [gen, mine]
    assert json.loads(ok(server, "job", mine, "--json"))["payload"] == 2


def test_pause_of_a_queue_that_never_had_a_job_warns(server: ServerProcess) -> None:
    ok(server, "enqueue", "mail", "1")
    r = tqd(server, "pause", "mail")
    assert r.returncode == 0 and "paused" in r.stdout and r.stderr == ""
    r = tqd(server, "pause", "mial")  # a typo
    assert r.returncode == 0 and "paused" in r.stdout
    assert r.stderr.startswith("tqd: warning: queue 'mial' has never had a job"), r.stderr
    r = tqd(server, "resume", "mial")  # it exists now (paused): no second warning
    assert r.returncode == 0 and r.stderr == ""
    r = tqd(server, "resume", "nosuchqueue")
    assert r.returncode == 0 and r.stderr.startswith("tqd: warning: queue 'nosuchqueue' has never")


def test_burst_worker_exits_when_server_unreachable(tmp_path: Path) -> None:
    (tmp_path / "downtasks.py").write_text(textwrap.dedent("""
        from tqd import Worker

        worker = Worker(queues=["q"])

        @worker.task("t")
        def t(job):
            return None
    """))
    r = tqd(None, "worker", "downtasks:worker", "--burst", cwd=tmp_path, url="http://127.0.0.1:1")
    assert r.returncode == 3, r.stderr
    assert r.stderr.splitlines()[-1].startswith("tqd: cannot connect to http://127.0.0.1:1"), r.stderr
