"""The dashboard's cluster page (#/cluster) in a real browser, against a real server and a
real two-node cluster: the node's role and lease, the leader's followers with their lag
and in-sync state, the background loops, and that the page follows changes by itself.
(Browser and rules as in tests/test_ui.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from _browser import launch, new_page, open_ui
from _cluster import Cluster
from _http import Api, running
from playwright.sync_api import Browser, Page, expect


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with new_page(browser) as pg:
        yield pg


def test_a_standalone_server_shows_its_role_and_loops(page: Page, tmp_path: Path) -> None:
    with running(tmp_path / "data") as (s, _):
        open_ui(page, s.url)
        page.click("#node-role")  # the header's role links to the page
        expect(page).to_have_url(re.compile(r"#/cluster$"))
        expect(page.locator("h1")).to_have_text("Cluster")
        expect(page.locator("[data-nav=cluster]")).to_have_attribute("aria-current", "page")
        node = page.locator("#cluster-node")
        expect(node.locator("dd .badge").first).to_have_text("standalone")
        expect(node).to_contain_text("Takes writes")
        expect(node).not_to_contain_text("Lease")
        expect(page.locator("#cluster-followers-note")).to_contain_text("runs alone")
        expect(page.locator("#cluster-followers tr")).to_have_count(0)
        timers = page.locator("#cluster-loops tr[data-key='write-deadline']")
        expect(timers.locator("td").nth(1)).to_have_text("running")
        history = page.locator("#cluster-loops tr[data-key='history'] td")  # a sample at start
        expect(history.nth(5)).to_have_text("just now")  # when the loop last did its work
        runs = int(timers.locator("td").nth(2).inner_text().replace(",", ""))
        # read again by itself: the write-deadline loop's passes (one each 0.5 s) go up without a reload
        expect(timers.locator("td").nth(2)).not_to_have_text(str(runs), timeout=10000)


def test_the_leader_lists_its_followers_and_their_lag_live(page: Page, tmp_path: Path) -> None:
    with Cluster(tmp_path, n=2, sync=0).start() as c:
        leader = c.settled()
        follower = next(n for n in c.nodes if n is not leader)
        open_ui(page, leader.url, "#/cluster")
        node = page.locator("#cluster-node")
        expect(node.locator("dd .badge").first).to_have_text("leader")
        expect(node).to_contain_text("this node")
        expect(node).to_contain_text(re.compile(rf"Node\s*{leader.name}\s*Role"))
        expect(node).to_contain_text("reachable")
        fol = page.locator(f"#cluster-followers tr[data-key='{follower.name}']")
        expect(fol.locator("td").nth(1)).to_have_text(follower.url)
        expect(fol.locator("td").nth(3)).to_have_text("0 entries")
        expect(fol.locator("td").nth(5)).to_have_text("–")  # no sync replicas: no in-sync set
        expect(page.locator("#cluster-followers-note")).to_be_hidden()
        for name in ("lease", "replication", "in-sync-set", "timers"):
            expect(page.locator(f"#cluster-loops tr[data-key='{name}'] td").nth(1)).to_have_text("running")

        follower.kill()
        api = Api(leader.url)
        for _ in range(3):
            api.enqueue_ok("cl", {"payload": 1})
        # the page reads the status again by itself: the dead follower falls behind
        expect(fol.locator("td").nth(3)).to_have_text(re.compile(r"^[1-9][0-9,]* entries$"), timeout=10000)
        expect(fol.locator("td").nth(3).locator(".v")).to_have_class(re.compile(r"\bwarn\b"))


def test_a_follower_points_to_its_leader(page: Page, tmp_path: Path) -> None:
    with Cluster(tmp_path, n=2, sync=1).start() as c:
        leader = c.settled()
        follower = next(n for n in c.nodes if n is not leader)
        open_ui(page, leader.url, "#/cluster")
        fol = page.locator(f"#cluster-followers tr[data-key='{follower.name}']")
        expect(fol.locator("td").nth(5)).to_have_text("in sync")
        expect(page.locator("#cluster-node")).to_contain_text(
            re.compile(f"In-sync set\\s*{'n1, n2'}"))

        open_ui(page, follower.url, "#/cluster")
        node = page.locator("#cluster-node")
        expect(node.locator("dd .badge").first).to_have_text("follower")
        expect(node).to_contain_text("no: read only")
        link = page.locator("#cluster-followers-note a")
        expect(link).to_have_text(leader.url)
        expect(link).to_have_attribute("href", f"{leader.url}/ui/#/cluster")
        expect(node.get_by_role("link", name=leader.url)).to_be_visible()
        expect(page.locator("#node-role")).to_have_text(re.compile(r"follower · term \d+ · read only"))
