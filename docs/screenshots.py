"""Screenshots of the web dashboard for README.md: docs/img/dashboard-*.png.

Starts a three-node cluster of `tqd serve` (free ports, a temporary directory, a file://
lease, one sync replica), fills its leader with demo data (a few queues; producers and
workers running for a minute so that the charts have a shape; jobs that fail with
tracebacks, go dead, report progress), then photographs the overview, a queue, a job and
the cluster page in Debian's chromium (light; the overview dark too).

    python docs/screenshots.py [--seconds 60] [--out docs/img]
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUEUES = {"emails": "send_email", "reports": "render_pdf", "thumbnails": "resize_image",
          "webhooks": "deliver_webhook"}
TRACEBACK = """Traceback (most recent call last):
  File "/app/tasks/mail.py", line 41, in send_email
    smtp.send_message(msg)
  File "/usr/lib/python3.11/smtplib.py", line 986, in send_message
    return self.sendmail(from_addr, to_addrs, flatmsg, mail_options, rcpt_options)
  File "/usr/lib/python3.11/smtplib.py", line 908, in sendmail
    raise SMTPDataError(code, resp)
smtplib.SMTPDataError: (451, b'4.3.0 Mail server temporarily rejected message')"""
PDF_TRACEBACK = """Traceback (most recent call last):
  File "/app/tasks/reports.py", line 88, in render_pdf
    template = env.get_template(payload["template"])
  File "/app/venv/lib/python3.11/site-packages/jinja2/environment.py", line 1010, in get_template
    return self._load_template(name, globals)
jinja2.exceptions.TemplateNotFound: invoice-v3.html"""


class Api:
    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.local = threading.local()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        r = conn.getresponse()
        raw = r.read()
        if r.status >= 400:
            raise RuntimeError(f"{method} {path}: {r.status} {raw[:200]!r}")
        if not raw:
            return None
        if path == "/v1/lease":  # NDJSON: a job a line
            return [json.loads(x) for x in raw.splitlines() if x]
        return json.loads(raw)

    def enqueue(self, queue: str, job: dict[str, Any]) -> str:
        return str(self.call("POST", f"/v1/queues/{queue}/jobs", job)["id"])

    def lease(self, queue: str, n: int, worker: str) -> list[dict[str, Any]]:
        got = self.call("POST", "/v1/lease", {"queues": [queue], "max": n, "worker": worker})
        return got or []

    def lease_this(self, queue: str, jid: str, worker: str) -> dict[str, Any]:
        """The lease of job jid (the others leased with it are released, unrun)."""
        found: dict[str, Any] | None = None
        for job in self.lease(queue, 1000, worker):
            if job["id"] == jid:
                found = job
            else:
                self.call("POST", f"/v1/jobs/{job['id']}/release", {"lease": job["lease"]})
        assert found is not None, f"{jid} was not leased"
        return found


def start_server(data: Path, *cluster: str) -> tuple[subprocess.Popen[bytes], str]:
    cmd = [sys.executable, "-m", "tqd", "serve", "--port", "0", "--data", str(data),
           "--history-interval-s", "2", "--backoff-base-s", "0.5", "--backoff-max-s", "5", *cluster]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    for _ in range(200):
        line = proc.stderr.readline()
        m = re.search(rb"listening on (http://\S+)", line)
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe open
            return proc, m.group(1).decode()
    proc.kill()
    raise SystemExit("tqd serve did not start")


def start_cluster(tmp: Path) -> tuple[list[subprocess.Popen[bytes]], str]:
    """Three nodes; n1 starts first and leads. The leader's URL once all three are in sync."""
    procs, urls = [], []
    for name in ("n1", "n2", "n3"):
        proc, url = start_server(tmp / name, "--lease-store", f"file://{tmp / 'lease'}",
                                 "--node-id", name, "--sync-replicas", "1", "--lease-ttl-s", "3")
        procs.append(proc)
        urls.append(url)
    api = Api(urls[0])
    for _ in range(300):
        c = api.call("GET", "/v1/cluster")
        if c["role"] == "leader" and c["writable"] and len(c["isr"]) == 3:
            return procs, urls[0]
        time.sleep(0.1)
    for proc in procs:
        proc.kill()
    raise SystemExit(f"the cluster did not settle: {c}")


def payload(queue: str, i: int) -> dict[str, Any]:
    kinds: dict[str, dict[str, Any]] = {
        "emails": {"to": f"user{i}@example.com", "template": "welcome", "locale": "en"},
        "reports": {"account": 4400 + i, "template": "invoice-v3.html", "month": "2026-11"},
        "thumbnails": {"src": f"s3://uploads/img_{i:05d}.jpg", "sizes": [128, 512]},
        "webhooks": {"url": f"https://hooks.example.com/{i % 7}", "event": "order.paid"},
    }
    return kinds[queue]


def simulate(api: Api, seconds: float, stop: threading.Event) -> None:
    """Producers with a changing rate and workers that sometimes fail (a `seconds` long
    cycle), until `stop`. A worker finishes its jobs a round later: some are active."""
    rnd = random.Random(7)
    t0 = time.monotonic()
    n = 0
    held: dict[str, list[dict[str, Any]]] = {}
    while not stop.is_set():
        elapsed = time.monotonic() - t0
        wave = 1 + math.sin(elapsed / seconds * 2 * math.pi * 1.5)
        for queue, kind in QUEUES.items():
            busy = 3 if queue == "thumbnails" else 1
            for _ in range(int(rnd.random() * 6 * wave * busy)):
                n += 1
                api.enqueue(queue, {"type": kind, "payload": payload(queue, n),
                                    "priority": rnd.choice([3, 5, 5, 5, 7, 9]), "max_attempts": 3})
            for job in held.get(queue, []):
                if rnd.random() < 0.12:
                    api.call("POST", f"/v1/jobs/{job['id']}/fail", {
                        "lease": job["lease"], "retry_in": 1,
                        "error": "SMTPDataError: 451 temporarily rejected" if queue == "emails"
                        else "TimeoutError: upstream did not answer in 30 s",
                        "details": TRACEBACK if queue == "emails" else None})
                else:
                    api.call("POST", f"/v1/jobs/{job['id']}/ack", {"lease": job["lease"], "result": {"ok": True}})
            take = int(rnd.random() * 7 * busy * (0.6 if elapsed % seconds < seconds / 2 else 1.3)) or 1
            held[queue] = api.lease(queue, take, f"worker-{rnd.randint(1, 4)}@host-{queue[:3]}")
        time.sleep(0.5)
    for jobs in held.values():  # hand the last round back
        for job in jobs:
            api.call("POST", f"/v1/jobs/{job['id']}/release", {"lease": job["lease"]})


def showcase_job(api: Api) -> str:
    """A report that failed once with a traceback, then ran with progress and a result."""
    jid = api.enqueue("reports", {"type": "render_pdf", "priority": 9, "max_attempts": 5, "payload": {
        "account": 4411, "template": "invoice-v3.html", "month": "2026-11", "currency": "EUR",
        "lines": [{"sku": "PLAN-PRO", "qty": 1, "amount": 49.0}, {"sku": "SEATS", "qty": 12, "amount": 96.0}]}})
    job = api.lease_this("reports", jid, "worker-2@host-rep")
    api.call("POST", f"/v1/jobs/{jid}/fail", {"lease": job["lease"], "error": "TemplateNotFound: invoice-v3.html",
                                              "details": PDF_TRACEBACK, "retry_in": 0})
    job = api.lease_this("reports", jid, "worker-3@host-rep")
    time.sleep(0.3)
    api.call("POST", f"/v1/jobs/{jid}/heartbeat", {"lease": job["lease"], "progress": {"pct": 100, "pages": 3}})
    time.sleep(0.4)
    api.call("POST", f"/v1/jobs/{jid}/ack", {"lease": job["lease"], "result": {
        "url": "s3://reports/2026-11/invoice-4411.pdf", "pages": 3, "bytes": 48211}})
    return jid


def dead_letters(api: Api) -> None:
    for i in range(3):
        jid = api.enqueue("emails", {"type": "send_email", "payload": payload("emails", 900 + i),
                                     "priority": 9, "max_attempts": 1})
        job = api.lease_this("emails", jid, "worker-1@host-ema")
        api.call("POST", f"/v1/jobs/{jid}/fail", {"lease": job["lease"], "error": "SMTPRecipientsRefused: 550",
                                                  "details": TRACEBACK.replace("SMTPDataError: (451", "SMTPRecipientsRefused: (550")})
    for i in range(4):
        api.enqueue("reports", {"type": "render_pdf", "payload": payload("reports", i), "delay": 900 + 300 * i})
    for i in range(2):
        api.enqueue("billing", {"type": "charge_card", "payload": {"invoice": 7000 + i}})
    api.call("POST", "/v1/queues/billing/pause")


def shoot(url: str, out: Path, job: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        shots: list[tuple[str, str, Literal["light", "dark"], int]] = [
                ("dashboard-overview", "#/", "light", 820), ("dashboard-queue", "#/queues/emails?limit=10", "light", 1000),
                ("dashboard-job", f"#/jobs/{job}", "light", 900), ("dashboard-overview-dark", "#/", "dark", 820),
                ("dashboard-cluster", "#/cluster", "light", 1000)]
        for name, fragment, scheme, height in shots:
            ctx = browser.new_context(viewport={"width": 1280, "height": height}, color_scheme=scheme,
                                      device_scale_factor=1)
            page = ctx.new_page()
            page.goto(f"{url}/ui/{fragment}")
            page.wait_for_selector("#live-state[data-state=live], #live-state[data-state=polling]")
            page.wait_for_timeout(1500)  # the charts and the table settle
            page.screenshot(path=str(out / f"{name}.png"), full_page=name == "dashboard-job")
            print(f"wrote {out / name}.png")
            ctx.close()
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the demo traffic runs")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "img")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        procs, url = start_cluster(Path(tmp))
        try:
            api = Api(url)
            dead_letters(api)
            job = showcase_job(api)
            stop = threading.Event()
            traffic = threading.Thread(target=simulate, args=(api, args.seconds, stop))
            traffic.start()
            time.sleep(args.seconds)  # the charts' hour, shortened
            try:
                shoot(url, args.out, job)
            finally:
                stop.set()
                traffic.join()
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)


if __name__ == "__main__":
    main()
