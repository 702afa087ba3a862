"""The dashboard's files (tqd/http/ui.py) over HTTP, and its modules' logic run in the browser.

The pages themselves, with real data, are tests/test_ui.py's.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from _browser import STATIC, launch, new_page, open_ui
from _http import Api, running
from conftest import ServerProcess
from playwright.sync_api import Page


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running(tmp_path_factory.mktemp("ui-files") / "data") as (s, _):
        yield s


@pytest.fixture
def api(srv: ServerProcess) -> Api:
    return Api(srv.url)


@pytest.fixture(scope="module")
def page(srv: ServerProcess) -> Iterator[Page]:
    """One page for the module tests (they import modules; they change nothing)."""
    with launch() as browser, new_page(browser) as pg:
        open_ui(pg, srv.url)
        yield pg


def test_files_are_served_with_their_types_and_a_strict_csp(api: Api) -> None:
    for path in ("/ui", "/ui/"):
        r = api.request("GET", path)
        assert r.status == 200 and r.ctype == "text/html", r
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp, csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert b'src="/ui/app.js"' in r.body
    types = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
    names = sorted(p.name for p in STATIC.iterdir())
    assert {"index.html", "app.js", "style.css"} <= set(names)
    for name in names:
        r = api.request("GET", f"/ui/{name}", headers={"Accept-Encoding": "identity"})
        assert r.status == 200 and r.ctype == types[Path(name).suffix], (name, r)
        assert r.body == (STATIC / name).read_bytes()
        assert r.headers["Cache-Control"] == "no-cache"
        again = api.request("GET", f"/ui/{name}", headers={"If-None-Match": r.headers["ETag"]})
        assert again.status == 304 and again.body == b"", again
    r = api.request("GET", "/ui/app.js", headers={"Accept-Encoding": "gzip, deflate"})
    assert r.headers["Content-Encoding"] == "gzip" and gzip.decompress(r.body) == (STATIC / "app.js").read_bytes()
    assert r.headers["Vary"] == "Accept-Encoding"
    again = api.request("GET", "/ui/app.js", headers={"Accept-Encoding": "gzip", "If-None-Match": r.headers["ETag"]})
    assert again.status == 304, again
    r = api.request("GET", "/ui/app.js", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in r.headers and r.body == (STATIC / "app.js").read_bytes()
    for bad in ("/ui/nope.js", "/ui/__init__.py", "/ui/..%2F__init__.py", "/ui/..%2F..%2Fconfig.py",
                "/ui/%2e%2e", "/ui/static", "/ui/index.html%00"):
        r = api.request("GET", bad)
        assert r.status == 404 and r.json()["error"] == "not_found", (bad, r)


def test_no_inline_script_or_style_and_no_html_injection() -> None:
    """What the CSP forbids is not in the files at all; the scripts build the DOM from text."""
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline <script>"
    assert not re.search(r"\son[a-z]+=|\sstyle=|<style", html), "inline handler or style"
    for js in STATIC.glob("*.js"):
        text = js.read_text()
        for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function",
                      "document.write", 'setAttribute("style"'):
            assert risky not in text, f"{js.name}: {risky}"


def test_ui_false_turns_the_dashboard_off(server_factory: type[ServerProcess], tmp_path: Path) -> None:
    s = server_factory(tmp_path / "data", "--ui", "false").start()
    a = Api(s.url)
    for path in ("/ui", "/ui/", "/ui/app.js"):
        r = a.request("GET", path)
        assert r.status == 404 and r.json()["error"] == "not_found", r
    assert a.request("GET", "/v1/queues").status == 200
    assert s.stop() == 0


# ---- the modules' logic ---------------------------------------------------------------


def test_the_event_parser_takes_any_chunking(page: Page) -> None:
    """live.js's SSE parser: events split anywhere, CRLF, comments, ids, multi-line data."""
    got = page.evaluate("""async () => {
        const { sseParser } = await import("/ui/live.js");
        const text = ": hello\\r\\nretry: 1500\\r\\n\\r\\nevent: job\\r\\ndata: {\\"a\\":1}\\r\\n\\r\\n" +
          "event: queue\\ndata: {\\"b\\":\\ndata: 2}\\nid: 7\\n\\n: ping\\n\\ndata: x\\n\\n";
        const out = [];
        for (const size of [1, 2, 3, 5, 1000]) {
          const events = [];
          const feed = sseParser((e) => events.push(e));
          for (let i = 0; i < text.length; i += size) feed(text.slice(i, i + size));
          out.push({ events, state: feed.state() });
        }
        return out;
    }""")
    want = [{"event": "job", "data": '{"a":1}', "id": None},
            {"event": "queue", "data": '{"b":\n2}', "id": "7"},
            {"event": "message", "data": "x", "id": "7"}]
    for run in got:
        assert run["events"] == want and run["state"] == {"lastId": "7", "retry": 1500}, run


def test_the_charts_samples_stay_an_interval_apart(page: Page) -> None:
    """history.js: stats that come every half second (events, polls) make one sample per
    interval, the newest standing for "now"; two queues' samples are summed once each;
    throughput is the totals' change per second."""
    got = page.evaluate("""async () => {
        const { History } = await import("/ui/history.js");
        const h = new History(10);
        h.now = () => 1000;
        for (let t = 0; t <= 100; t += 0.5) {
          for (const name of ["a", "b"]) {
            h.add({ name, queued: 3, scheduled: 0, active: 1, dead: 0,
                    enqueued_total: 2 * t, completed_total: t, failed_total: 0 }, 900 + t);
          }
        }
        const s = h.series();
        return { ts: h.byQueue.get("a").map((x) => x.t),
                 queued: s.backlog.series[0].points, completed: s.throughput.series[1].points };
    }""")
    gaps = [b - a for a, b in zip(got["ts"], got["ts"][1:], strict=False)]
    assert got["ts"][0] == 900 and got["ts"][-1] == 1000, got["ts"]
    assert all(g >= 10 for g in gaps[:-1]) and 0 < gaps[-1] <= 10, gaps
    assert {v for _, v in got["queued"]} == {6}, got["queued"]  # 3 + 3, never 9 or 12
    assert all(abs(v - 2) < 1e-9 for _, v in got["completed"]), got["completed"]  # 1/s each
