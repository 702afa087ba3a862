"""The dashboard's tests' browser: Debian's chromium driven by Playwright.

Never a downloaded browser: /usr/bin/chromium (apt-get install chromium; .ci/run does). Without
it the tests skip, unless TQD_REQUIRE_BROWSER=1 (.ci/run sets it): then they fail. Playwright's
launch gives each browser a fresh temporary profile (user data dir), and each test its own
context (storage, cache).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tqd import config
from tqd.http.app import ROUTES

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STATIC = Path(__file__).resolve().parent.parent / "tqd" / "ui" / "static"
# charts fill in seconds, not minutes (the setting comes with GET /v1/history)
FAST_HISTORY = (("--history-interval-s", "1")
                if "history_interval_s" in {f.name for f in config.settings_fields()} else ())
HAS_EVENTS = ("GET", "/v1/events") in {(r.method, r.path) for r in ROUTES}
DESKTOP: Any = {"width": 1280, "height": 900}
PHONE: Any = {"width": 375, "height": 812}
expect.set_options(timeout=8000)


@contextmanager
def launch() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("TQD_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TQD_REQUIRE_BROWSER=1 but there is no {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium; TQD_REQUIRE_BROWSER=1 makes this a failure)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield b
        finally:
            b.close()


def watch(page: Page) -> list[str]:
    """The page's uncaught errors and console errors (CSP violations are console errors);
    a failed request is not one (the UI answers 401 and 404 itself)."""
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}")
            if m.type == "error" and "Failed to load resource" not in m.text else None)
    return problems


@contextmanager
def new_page(browser: Browser, **context: Any) -> Iterator[Page]:
    """A page in a fresh context; fails the test on an error in it (see watch)."""
    ctx = browser.new_context(**{"viewport": DESKTOP, **context})
    try:
        page = ctx.new_page()
        problems = watch(page)
        yield page
        assert not problems, problems
    finally:
        ctx.close()


def open_ui(page: Page, url: str, fragment: str = "#/") -> None:
    """The dashboard at fragment, once it is live (or polling)."""
    page.goto(f"{url}/ui/{fragment}")
    expect(page.locator("#live-state")).to_have_attribute("data-state", re.compile("live|polling"))
