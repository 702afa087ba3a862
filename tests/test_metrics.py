"""GET /metrics against the real server: parsed with prometheus-client's own parser, every
family's numbers checked against what was done; stored totals survive a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _http import NDJSON, Api
from conftest import ServerProcess
from prometheus_client.parser import text_string_to_metric_families


def scrape(api: Api) -> dict[str, Any]:
    r = api.request("GET", "/metrics")
    assert r.status == 200, r
    assert r.ctype == "text/plain"
    return {f.name: f for f in text_string_to_metric_families(r.body.decode())}


def value(fams: dict[str, Any], name: str, sample: str | None = None, **labels: str) -> float:
    fam = fams[name]
    got = [s.value for s in fam.samples
           if (sample is None or s.name == sample) and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(got) == 1, (name, labels, fam.samples)
    return float(got[0])


def test_metrics_count_what_was_done(server_factory: type[ServerProcess], tmp_path: Path) -> None:
    srv = server_factory(tmp_path / "d").start()
    api = Api(srv.url)
    body = "\n".join(f'{{"payload": {i}, "priority": {7 if i < 3 else 5}}}' for i in range(10))
    assert api.request("POST", "/v1/queues/mail/jobs", raw=body.encode(), ctype=NDJSON).status == 201
    leased = api.request("POST", "/v1/lease", {"queues": ["mail"], "max": 4}).lines()
    for j in leased[:3]:
        assert api.request("POST", f"/v1/jobs/{j['id']}/ack", {"lease": j["lease"]}).status == 200
    j = leased[3]
    r = api.request("POST", f"/v1/jobs/{j['id']}/fail", {"lease": j["lease"], "error": "x", "retry": False})
    assert r.status == 200, r
    api.request("POST", "/v1/queues/other/pause")

    m = scrape(api)
    assert value(m, "tqd_queue_jobs", queue="mail", state="queued") == 6
    assert value(m, "tqd_queue_jobs", queue="mail", state="completed") == 3
    assert value(m, "tqd_queue_jobs", queue="mail", state="dead") == 1
    assert value(m, "tqd_queue_jobs", queue="mail", state="active") == 0
    assert value(m, "tqd_queue_queued_by_priority", queue="mail", priority="5") == 6
    assert value(m, "tqd_queue_queued_by_priority", queue="mail", priority="7") == 0
    assert value(m, "tqd_jobs_enqueued", "tqd_jobs_enqueued_total", queue="mail") == 10
    assert value(m, "tqd_jobs_completed", "tqd_jobs_completed_total", queue="mail") == 3
    assert value(m, "tqd_jobs_failed", "tqd_jobs_failed_total", queue="mail") == 1
    assert value(m, "tqd_queue_paused", queue="other") == 1
    assert value(m, "tqd_queue_oldest_queued_age_seconds", queue="mail") >= 0
    # latency histograms: 4 jobs waited to be leased, 3 ran to completion
    assert value(m, "tqd_job_wait_seconds", "tqd_job_wait_seconds_count", queue="mail") == 4
    assert value(m, "tqd_job_run_seconds", "tqd_job_run_seconds_count", queue="mail") == 3
    assert value(m, "tqd_job_wait_seconds", "tqd_job_wait_seconds_bucket", queue="mail", le="+Inf") == 4
    # the writer: commits with their size and fsync time
    commits = value(m, "tqd_commit_seconds", "tqd_commit_seconds_count")
    assert commits >= 7  # enqueue, lease, 3 acks, fail, pause
    assert value(m, "tqd_commit_requests", "tqd_commit_requests_count") == commits
    assert value(m, "tqd_writer_busy_seconds", "tqd_writer_busy_seconds_total") > 0
    assert value(m, "tqd_parked_long_polls") == 0
    # HTTP requests by route template (not by path: one series per route)
    acks = value(m, "tqd_http_request_duration_seconds", "tqd_http_request_duration_seconds_count",
                 route="/v1/jobs/{id}/ack", method="POST", status="200")
    assert acks == 3
    # loops and role
    assert value(m, "tqd_loop_running", loop="timers") == 1
    assert value(m, "tqd_role", role="standalone") == 1
    assert value(m, "tqd_writable") == 1

    # stored totals survive a restart; the writer's histograms start again
    srv.stop()
    srv = server_factory(tmp_path / "d").start()
    m = scrape(Api(srv.url))
    assert value(m, "tqd_jobs_enqueued", "tqd_jobs_enqueued_total", queue="mail") == 10
    assert value(m, "tqd_jobs_completed", "tqd_jobs_completed_total", queue="mail") == 3
    assert value(m, "tqd_queue_jobs", queue="mail", state="queued") == 6


def test_a_parked_long_poll_is_counted(server_factory: type[ServerProcess], tmp_path: Path) -> None:
    import threading

    srv = server_factory(tmp_path / "d").start()
    api = Api(srv.url)
    t = threading.Thread(target=api.request, args=("POST", "/v1/lease", {"queues": ["q"], "wait": 3}))
    t.start()
    try:
        for _ in range(100):
            if value(scrape(api), "tqd_parked_long_polls") == 1:
                break
        else:
            raise AssertionError("the parked long-poll was never counted")
    finally:
        api.enqueue("q", {})  # serve it
        t.join()


def test_the_monitoring_examples_use_only_metrics_the_server_exports(
        server_factory: type[ServerProcess], tmp_path: Path) -> None:
    import json
    import re

    import yaml

    root = Path(__file__).resolve().parent.parent / "examples" / "monitoring"
    exprs = [r["expr"] for g in yaml.safe_load((root / "alerts.yml").read_text())["groups"]
             for r in g["rules"]]
    dash = json.loads((root / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\btqd_[a-z_]+", e)}
    srv = server_factory(tmp_path / "d").start()
    fams = scrape(Api(srv.url))
    exported = set(fams) | {s.name for f in fams.values() for s in f.samples}
    for f in fams.values():  # the series a histogram or counter family makes, even when empty
        exported |= {f.name + suffix for suffix in ("_total", "_bucket", "_sum", "_count")}
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    assert {"tqd_queue_jobs", "tqd_writable", "tqd_jobs_failed_total"} <= used


def test_metrics_need_a_read_token_with_metrics_auth(server_factory: type[ServerProcess],
                                                     tmp_path: Path) -> None:
    from tqd.auth import tokens

    file = tmp_path / "tokens.toml"
    viewer = tokens.create(file, "prom", "viewer", ["*"])[0]
    srv = server_factory(tmp_path / "d", "--auth", str(file), "--metrics-auth", "true").start()
    api = Api(srv.url)
    assert api.request("GET", "/metrics").status == 401
    r = api.request("GET", "/metrics", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status == 200 and b"tqd_writable" in r.body
    srv2 = server_factory(tmp_path / "d2", "--auth", str(file)).start()
    assert Api(srv2.url).request("GET", "/metrics").status == 200  # open by default
