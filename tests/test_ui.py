"""The web dashboard (`/ui`, tqd/ui/static) in a real browser, with real data.

Debian's chromium driven by Playwright (tests/_browser.py: never a downloaded browser; skipped
without chromium unless TQD_REQUIRE_BROWSER=1) against the real `tqd serve` on port 0. Each test
has a fresh browser context and fails on an uncaught error in the page or a
Content-Security-Policy violation. What an action did is checked through the JSON API.
(The files over HTTP, and the modules' logic, are tests/test_ui_files.py's.)
"""

from __future__ import annotations

import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _browser import FAST_HISTORY, HAS_EVENTS, PHONE, launch, new_page, open_ui, watch
from _http import Api, running
from conftest import ServerProcess
from playwright.sync_api import Browser, Page, expect

from tqd.auth import tokens


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch() as b:
        yield b


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running(tmp_path_factory.mktemp("ui") / "data", *FAST_HISTORY) as (s, _):
        yield s


@pytest.fixture
def api(srv: ServerProcess) -> Api:
    return Api(srv.url)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with new_page(browser) as pg:
        yield pg


def dead_job(api: Api, queue: str, **job: Any) -> str:
    jid = api.enqueue_ok(queue, {"max_attempts": 1, "priority": 9, **job})  # leased first
    leased = api.lease_one(queue, worker="w-dead")
    assert leased["id"] == jid
    assert api.fail(jid, leased["lease"], error="boom", details="Traceback (most recent call last):\n"
                    "  File \"tasks.py\", line 3, in run\nValueError: boom").json()["state"] == "dead"
    return jid


def done_job(api: Api, queue: str, **job: Any) -> str:
    jid = api.enqueue_ok(queue, {"priority": 9, **job})
    leased = api.lease_one(queue, worker="w-done")
    assert leased["id"] == jid
    assert api.ack(jid, leased["lease"], {"ok": True}).status == 200
    return jid


def confirm(page: Page, button: str = "#confirm-ok") -> None:
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.click(button)
    expect(page.locator("#confirm-dialog")).to_be_hidden()


# ---- pages with real data -----------------------------------------------------------


def test_overview_shows_every_queue_with_its_counts_and_charts(page: Page, srv: ServerProcess,
                                                               api: Api) -> None:
    for _ in range(3):
        api.enqueue_ok("ov-mail", {"type": "send"})
    api.enqueue_ok("ov-mail", {"type": "send", "delay": 600})
    dead_job(api, "ov-mail")
    done_job(api, "ov-mail")
    api.enqueue_ok("ov-paused")
    assert api.request("POST", "/v1/queues/ov-paused/pause").status == 200
    open_ui(page, srv.url)
    expect(page.locator("h1")).to_have_text("Overview")
    row = page.locator('tr[data-key="ov-mail"]')
    for state, n in {"queued": "3", "scheduled": "1", "active": "0", "dead": "1", "completed": "1",
                     "cancelled": "0"}.items():
        expect(row.locator(f".n-{state}")).to_have_text(n)
    expect(row.locator(".badge")).to_have_text("running")
    expect(row.locator(".oldest")).to_have_text(re.compile(r"\d+ (ms|s)"))
    paused = page.locator('tr[data-key="ov-paused"]')
    expect(paused.locator(".badge")).to_have_text("paused")
    expect(paused.locator("[data-action=pause]")).to_have_text("Resume")
    expect(page.locator("a.queue-link", has_text="ov-mail")).to_have_attribute("href", "#/queues/ov-mail")
    # the charts: backlog and throughput, with a line of more than one point
    expect(page.locator("figure.chart")).to_have_count(2)
    expect(page.locator("figure.chart").first.locator("path.line.s-queued")).to_have_attribute(
        "d", re.compile(r"^M[^M]*L"))
    expect(page.locator("figure.chart").nth(1).locator(".legend")).to_contain_text("Completed")
    expect(page.locator(".tile-dead .tile-value")).not_to_have_text("–")
    expect(page.locator("#node-role")).to_have_text("standalone")
    page.fill("#queue-filter", "paused")
    expect(page.locator("table.queues tbody tr")).to_have_count(1)


def test_queue_page_filters_pages_and_finds_a_job(page: Page, srv: ServerProcess, api: Api) -> None:
    ids = [api.enqueue_ok("qp", {"type": "ab"[i % 2], "priority": 3 + i % 3}) for i in range(23)]
    dead = dead_job(api, "qp2")  # its own queue: a lease here would take qp's first job
    api.enqueue_ok("qp2", {"type": "other"})
    open_ui(page, srv.url, "#/queues/qp?limit=10")
    rows = page.locator("table.jobs tbody tr")
    expect(page.locator("h1")).to_have_text("qp")
    expect(rows).to_have_count(10)
    expect(rows.first).to_have_attribute("data-key", ids[0])
    expect(page.locator(".tab-all .count")).to_have_text("23")
    page.click("[data-action=next]")
    expect(rows.first).to_have_attribute("data-key", ids[10])
    expect(page.locator(".pager")).to_contain_text("Page 2")
    page.click("[data-action=next]")
    expect(rows).to_have_count(3)
    expect(page.locator("[data-action=next]")).to_be_disabled()
    page.click("[data-action=prev]")
    expect(rows.first).to_have_attribute("data-key", ids[10])
    # filters: type, priority, state (in the URL, so the page can be linked to)
    page.fill("#f-type", "b")
    page.select_option("#f-priority", "4")
    page.click("form.filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"type=b"))
    want = [j for i, j in enumerate(ids) if i % 2 == 1 and 3 + i % 3 == 4]
    expect(rows).to_have_count(len(want))
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.key)") == want
    page.goto(f"{srv.url}/ui/#/queues/qp2?state=dead")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-key", dead)
    expect(rows.first.locator(".badge")).to_have_text("dead")
    expect(page.locator(".tab-dead")).to_have_attribute("aria-current", "page")
    # search by id: a job of the queue opens its page; an unknown id says so
    page.fill("#job-search", "nope-no-such-job")
    page.press("#job-search", "Enter")
    expect(page.locator("form.search .form-error")).to_have_text("No job with id nope-no-such-job.")
    page.fill("#job-search", ids[5])
    page.press("#job-search", "Enter")
    expect(page.locator("h1")).to_contain_text(ids[5])


def test_job_page_shows_payload_timeline_errors_result_and_progress(page: Page, srv: ServerProcess,
                                                                    api: Api) -> None:
    jid = api.enqueue_ok("jp", {"type": "send_email", "payload": {"to": "x@example.com"}, "max_attempts": 3})
    first = api.lease_one("jp", worker="w-a")
    api.fail(jid, first["lease"], error="SMTP 451", retry_in=0,
             details='Traceback (most recent call last):\n  File "mail.py", line 9\nSMTPError: 451')
    second = api.lease_one("jp", worker="w-b")
    assert api.heartbeat(jid, second["lease"], progress={"pct": 40}).status == 200
    assert api.ack(jid, second["lease"], {"sent": 2}).status == 200
    open_ui(page, srv.url, f"#/jobs/{jid}")
    expect(page.locator("h1")).to_contain_text(jid)
    expect(page.locator(".title-row .badge")).to_have_text("completed")
    expect(page.locator(".sec-payload pre")).to_contain_text('"to": "x@example.com"')
    expect(page.locator(".sec-result pre")).to_contain_text('"sent": 2')
    expect(page.locator(".sec-progress progress")).to_have_attribute("value", "40.0")
    expect(page.locator(".sec-progress")).to_contain_text("40%")
    expect(page.locator(".sec-details")).to_contain_text("2 of 3")
    expect(page.locator(".sec-details")).to_contain_text("w-b")
    items = page.locator(".timeline li")
    expect(items).to_have_count(4)
    texts = items.all_inner_texts()
    assert [t.split("\n")[0].split(" ·")[0] for t in texts] == [
        "Enqueued", "Attempt 1 failed: SMTP 451", "Attempt 2 started", "Completed"], texts
    assert "by w-b" in texts[2] and "ran " in texts[3], texts
    err = page.locator(".sec-errors details")
    expect(err).to_have_count(1)
    expect(err.locator("summary")).to_contain_text("Attempt 1")
    expect(err.locator("pre.traceback")).to_contain_text("SMTPError: 451")
    expect(page.locator("[data-action=retry]")).to_be_disabled()
    expect(page.locator("[data-action=cancel]")).to_be_disabled()
    page.goto(f"{srv.url}/ui/#/jobs/no-such-job")
    expect(page.locator("h1")).to_have_text("Not found")


# ---- actions ------------------------------------------------------------------------


def test_job_actions_ask_first_and_change_the_job(page: Page, srv: ServerProcess, api: Api) -> None:
    dead = dead_job(api, "act-jobs")
    queued = api.enqueue_ok("act-jobs")
    open_ui(page, srv.url, f"#/jobs/{dead}")
    page.click("[data-action=retry]")
    confirm(page, "#confirm-cancel")  # said no: nothing happens
    assert api.job(dead)["state"] == "dead"
    page.click("[data-action=retry]")
    expect(page.locator("#confirm-title")).to_have_text(f"Retry job {dead}?")
    confirm(page)
    expect(page.locator(".title-row .badge")).to_have_text("queued")
    assert api.job(dead)["state"] == "queued" and api.job(dead)["attempt"] == 0
    expect(page.locator("#toasts")).to_contain_text("queued again")
    page.goto(f"{srv.url}/ui/#/jobs/{queued}")
    page.click("[data-action=cancel]")
    confirm(page)
    expect(page.locator(".title-row .badge")).to_have_text("cancelled")
    assert api.job(queued)["state"] == "cancelled"


def test_queue_actions_ask_first_and_change_the_queue(page: Page, srv: ServerProcess, api: Api) -> None:
    dead = [dead_job(api, "act-q") for _ in range(2)]
    done = [done_job(api, "act-q") for _ in range(3)]
    open_ui(page, srv.url, "#/queues/act-q")
    page.click("[data-action=pause]")
    confirm(page)
    expect(page.locator(".title-row .badge")).to_have_text("paused")
    assert api.stats("act-q")["paused"] is True
    page.click("[data-action=pause]")  # now "Resume"
    confirm(page)
    expect(page.locator(".title-row .badge")).to_have_text("running")
    assert api.stats("act-q")["paused"] is False
    expect(page.locator("[data-action=redrive]")).to_have_text("Redrive dead (2)")
    page.click("[data-action=redrive]")
    confirm(page)
    expect(page.locator("#toasts")).to_contain_text("Moved 2 dead jobs")
    assert api.stats("act-q")["dead"] == 0 and {api.job(j)["state"] for j in dead} == {"queued"}
    page.click("[data-action=purge]")
    page.select_option("#confirm-field-state", "completed")
    confirm(page)
    expect(page.locator("#toasts")).to_contain_text("Deleted 3 completed jobs")
    assert api.stats("act-q")["completed"] == 0
    assert all(api.request("GET", f"/v1/jobs/{j}").status == 404 for j in done)
    # and from the overview's table
    page.goto(f"{srv.url}/ui/#/")
    page.locator('tr[data-key="act-q"] [data-action=pause]').click()
    confirm(page)
    expect(page.locator('tr[data-key="act-q"] .badge')).to_have_text("paused")
    assert api.stats("act-q")["paused"] is True


# ---- live ---------------------------------------------------------------------------


def test_pages_change_live_without_a_reload(page: Page, srv: ServerProcess, api: Api) -> None:
    open_ui(page, srv.url)
    if HAS_EVENTS:
        expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
    page.evaluate("window.__same_page = 1")
    api.enqueue_ok("live-q")
    row = page.locator('tr[data-key="live-q"]')
    expect(row.locator(".n-queued")).to_have_text("1")
    for _ in range(2):
        api.enqueue_ok("live-q")
    expect(row.locator(".n-queued")).to_have_text("3")
    page.click('a.queue-link:text-is("live-q")')
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(3)
    jid = api.enqueue_ok("live-q", {"type": "late"})
    expect(rows).to_have_count(4)
    expect(page.locator(".tab-queued .count")).to_have_text("4")
    page.click(f'a:text-is("{jid}")')
    expect(page.locator(".title-row .badge")).to_have_text("queued")
    leased = api.lease_jobs(["live-q"], max=4, worker="w-live")
    expect(page.locator(".title-row .badge")).to_have_text("active")
    expect(page.locator(".sec-details")).to_contain_text("w-live")
    lease = next(j["lease"] for j in leased if j["id"] == jid)
    api.ack(jid, lease, {"done": True})
    expect(page.locator(".title-row .badge")).to_have_text("completed")
    expect(page.locator(".sec-result pre")).to_contain_text('"done": true')
    assert page.evaluate("window.__same_page") == 1, "the page was reloaded"


def test_a_server_without_events_or_history_is_polled(page: Page, srv: ServerProcess, api: Api) -> None:
    """Against a server older than GET /v1/events and /v1/history (404 here), the pages
    poll, and the charts are drawn from what the page saw."""
    missing = b'{"error":"not_found","message":"no route"}'
    for path in ("**/v1/events*", "**/v1/history*"):
        page.route(path, lambda route: route.fulfill(status=404, body=missing,
                                                     content_type="application/json"))
    api.enqueue_ok("poll-q")
    open_ui(page, srv.url)
    expect(page.locator("#live-state")).to_have_attribute("data-state", "polling")
    row = page.locator('tr[data-key="poll-q"]')
    expect(row.locator(".n-queued")).to_have_text("1")
    api.enqueue_ok("poll-q")
    expect(row.locator(".n-queued")).to_have_text("2")
    expect(page.locator("figure.chart").first.locator("path.line.s-queued")).to_have_attribute(
        "d", re.compile(r"^M[^M]*L"))


@pytest.mark.skipif(not HAS_EVENTS, reason="the server has no GET /v1/events yet")
def test_the_stream_resumes_with_last_event_id_after_a_restart(browser: Browser, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    s = ServerProcess(tmp_path / "data", "--port", port).start()
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        problems = watch(page)
        sent: list[str | None] = []
        page.on("request", lambda r: sent.append(r.headers.get("last-event-id"))
                if "/v1/events" in r.url else None)
        api = Api(s.url)
        api.enqueue_ok("resume-q")
        open_ui(page, s.url)
        expect(page.locator('tr[data-key="resume-q"] .n-queued')).to_have_text("1")
        api.enqueue_ok("resume-q")  # an event with an id
        expect(page.locator('tr[data-key="resume-q"] .n-queued')).to_have_text("2")
        assert s.stop(signal.SIGTERM) == 0
        s = ServerProcess(tmp_path / "data", "--port", port).start()
        expect(page.locator("#live-state")).to_have_attribute("data-state", "live", timeout=15000)
        assert sent[0] is None and sent[-1] is not None and sent[-1].isdigit(), sent
        api.enqueue_ok("resume-q")
        expect(page.locator('tr[data-key="resume-q"] .n-queued')).to_have_text("3")
        assert not problems, problems
    finally:
        ctx.close()
        s.stop()


# ---- auth ---------------------------------------------------------------------------


def test_the_token_prompt_with_auth(browser: Browser, tmp_path: Path) -> None:
    made = {n: tokens.create(tmp_path / "tokens.toml", n, n, ["*"])[0] for n in ("admin", "viewer")}
    s = ServerProcess(tmp_path / "data", "--auth", str(tmp_path / "tokens.toml")).start()
    ctx = browser.new_context()
    try:
        api = Api(s.url)
        admin = {"Authorization": f"Bearer {made['admin']}"}
        assert api.request("POST", "/v1/queues/auth-q/jobs", {}, headers=admin).status == 201
        assert api.request("GET", "/ui/app.js").status == 200  # the files need no token
        page = ctx.new_page()
        problems = watch(page)
        page.goto(f"{s.url}/ui/")
        dialog = page.locator("#token-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#token-input")).to_be_focused()
        page.fill("#token-input", made["admin"][:-2] + "xx")
        page.press("#token-input", "Enter")
        expect(page.locator("#token-error")).to_contain_text("refused")
        expect(dialog).to_be_visible()
        page.fill("#token-input", made["admin"])
        page.press("#token-input", "Enter")
        expect(dialog).to_be_hidden()
        row = page.locator('tr[data-key="auth-q"]')
        expect(row.locator(".n-queued")).to_have_text("1")
        assert page.evaluate("sessionStorage.getItem('tqd.token')") == made["admin"]
        if HAS_EVENTS:  # the stream too sends the token (fetch, not EventSource)
            expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
        assert api.request("POST", "/v1/queues/auth-q/jobs", {}, headers=admin).status == 201
        expect(row.locator(".n-queued")).to_have_text("2")
        page.reload()  # the tab keeps the token
        expect(row.locator(".n-queued")).to_have_text("2")
        expect(dialog).to_be_hidden()
        page.click("#sign-out")
        expect(dialog).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('tqd.token')") is None
        # a viewer may look, not act: the refusal is shown, the queue unchanged
        page.fill("#token-input", made["viewer"])
        page.press("#token-input", "Enter")
        row.locator("[data-action=pause]").click()
        confirm(page)
        expect(page.locator("#toasts .toast-error")).to_contain_text("Could not pause auth-q")
        stats = api.request("GET", "/v1/queues/auth-q", headers=admin).json()
        assert stats["paused"] is False
        assert not problems, problems
    finally:
        ctx.close()
        s.stop()


# ---- layout and access --------------------------------------------------------------


def test_phone_width_has_no_horizontal_overflow(browser: Browser, srv: ServerProcess, api: Api) -> None:
    long_name = "phone-" + "x" * 60
    jid = dead_job(api, long_name, type="a_rather_long_job_type_name_" * 3,
                   payload={"text": "word " * 200, "nested": {"list": list(range(100))}})
    ctx = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = ctx.new_page()
        problems = watch(page)
        for fragment in ("#/", f"#/queues/{long_name}", f"#/jobs/{jid}", "#/cluster"):
            open_ui(page, srv.url, fragment)
            expect(page.locator("main h1")).to_be_visible()
            expect(page.locator("main .card").first).to_be_visible()
            if "queues" in fragment:  # a table becomes a stack of cards, a row each
                expect(page.locator("table.jobs tbody tr")).to_have_count(1)
                expect(page.locator("table.jobs thead")).to_be_hidden()
            # (not innerWidth: a phone zooms out to show a page wider than itself)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (fragment, width)
        assert not problems, problems
    finally:
        ctx.close()


def _tab_to(page: Page, selector: str, limit: int = 60) -> None:
    target = page.locator(selector)
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_the_keyboard_reaches_and_works_the_actions(page: Page, srv: ServerProcess, api: Api) -> None:
    jid = dead_job(api, "kb-q")
    open_ui(page, srv.url, f"#/jobs/{jid}")
    expect(page.locator(".title-row .badge")).to_have_text("dead")
    page.keyboard.press("Tab")
    expect(page.locator("a.skip")).to_be_focused()  # the first stop: skip to the content
    _tab_to(page, "[data-action=retry]")
    page.keyboard.press("Enter")
    expect(page.locator("#confirm-cancel")).to_be_focused()  # the safe choice first
    page.keyboard.press("Tab")
    expect(page.locator("#confirm-ok")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".title-row .badge")).to_have_text("queued")
    assert api.job(jid)["state"] == "queued"
    page.goto(f"{srv.url}/ui/#/queues/kb-q")
    expect(page.locator(".title-row .badge")).to_have_text("running")
    _tab_to(page, "[data-action=pause]")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")  # Escape cancels
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    assert api.stats("kb-q")["paused"] is False
    expect(page.locator("[data-action=pause]")).to_be_focused()  # the focus comes back
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator(".title-row .badge")).to_have_text("paused")
    assert api.stats("kb-q")["paused"] is True
    # every control has a name (a label, its text or aria-label)
    unnamed = page.evaluate("""() => [...document.querySelectorAll('main input, main select, main button')]
        .filter(el => !(el.labels && el.labels.length) && !el.textContent.trim() && !el.getAttribute('aria-label'))
        .map(el => el.outerHTML)""")
    assert unnamed == []


def test_dark_mode_follows_the_system(browser: Browser, srv: ServerProcess) -> None:
    def background(scheme: Any) -> int:
        ctx = browser.new_context(color_scheme=scheme)
        try:
            page = ctx.new_page()
            open_ui(page, srv.url)
            rgb = page.evaluate("getComputedStyle(document.body).backgroundColor")
            return sum(int(x) for x in re.findall(r"\d+", rgb)[:3])
        finally:
            ctx.close()

    assert background("dark") < 150 < 600 < background("light")
