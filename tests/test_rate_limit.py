"""Rate limits (tqd.auth.limits): a token bucket per token (per client address without
auth), per-role defaults and per-token overrides in the --auth file, a cap on parked
long-polls, 429 rate_limited with Retry-After, and the client and worker waiting it out.

The bucket is tested with a fake clock; the server tests count refusals on the server
(its /metrics), never by how long something took.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import http.client
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from _http import Api, Resp
from conftest import ServerProcess
from hypothesis import given, settings
from hypothesis import strategies as st

import tqd
from tqd.auth import tokens
from tqd.auth.limits import AUDIT_EVERY_S, Limits, default_burst
from tqd.auth.policy import Authenticator, Principal, Right, principal
from tqd.client import worker as worker_mod
from tqd.client.retry import MAX_RETRY_AFTER_S, CallRetry, Outcome, Policy
from tqd.http import auth as http_auth
from tqd.http.app import ROUTES


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# ---- the bucket, with a fake clock ---------------------------------------------------


def test_a_bucket_passes_its_burst_then_its_rate() -> None:
    clock = Clock()
    lim = Limits(5, 5, clock=clock)
    assert [lim.take("a") for _ in range(5)] == [None] * 5
    r = lim.take("a")
    assert r is not None and r.retry_after_s == 1  # 0.2 s to the next token: ceil, at least 1
    clock.t += 0.2
    assert lim.take("a") is None and lim.take("a") is not None
    clock.t += 10  # refills to the burst, not beyond
    assert [lim.take("a") for _ in range(6)].count(None) == 5


def test_retry_after_is_whole_seconds_until_a_token() -> None:
    clock = Clock()
    lim = Limits(0.3, 1, clock=clock)
    assert lim.take("a") is None
    clock.t += 1.0
    r = lim.take("a")
    assert r is not None and r.retry_after_s == 3  # 2.33 s to go at 0.3/s: rounded up
    assert default_burst(5) == 10 and default_burst(0.3) == 1 and default_burst(5, 7) == 7


def test_keys_and_overrides() -> None:
    clock = Clock()
    lim = Limits(1, 1, clock=clock)
    assert lim.take("a") is None and lim.take("a") is not None
    assert lim.take("b") is None  # a bucket of its own
    assert all(lim.take("free", rate=0) is None for _ in range(100))  # rate 0: not limited
    assert [lim.take("fast", rate=100, burst=50) for _ in range(51)].count(None) == 50
    off = Limits(0, 0, clock=clock)  # no default: only a token's own rate limits
    assert all(off.take("x") is None for _ in range(100))
    assert [off.take("y", rate=1) for _ in range(3)].count(None) == 2  # burst: 2 x rate
    # a token whose rate changed (SIGHUP) is held to the new one at once
    assert lim.take("c", rate=10, burst=10) is None
    assert [lim.take("c", rate=1, burst=1) for _ in range(3)].count(None) == 1  # 9 left, cut to 1


def test_memory_is_bounded_under_a_flood_of_addresses() -> None:
    clock = Clock()
    lim = Limits(10, 10, clock=clock, max_callers=1000)
    for i in range(50_000):
        lim.take(f"10.0.{i // 256}.{i % 256}")
        clock.t += 0.0001
    assert len(lim) <= 1000
    # idle buckets (full again) go without any cap being reached
    lim2 = Limits(10, 10, clock=clock)
    for i in range(10_000):
        lim2.take(f"a{i}")
        clock.t += 0.2  # each one full again by the next insert
    assert len(lim2) <= 2
    # a busy caller keeps its (empty) bucket while others come and go
    lim3 = Limits(1, 1, clock=clock, max_callers=1000)
    lim3.take("busy")
    for i in range(500):
        lim3.take(f"x{i}")
        assert lim3.take("busy") is not None


def test_refusals_are_audited_at_most_once_a_second() -> None:
    clock = Clock()
    lim = Limits(1, 1, clock=clock)
    lim.take("a")
    audits = []
    for _ in range(30):
        r = lim.take("a")
        assert r is not None
        audits.append(r.audit)
        clock.t += 0.01
    assert audits[0] == 1 and sum(audits) == 1  # the first at once, the rest held
    clock.t += AUDIT_EVERY_S  # a token again: take it, then be refused
    assert lim.take("a") is None
    r = lim.take("a")
    assert r is not None and r.audit == 30  # the held 29 and this one


def test_the_parked_cap() -> None:
    lim = Limits(0, 0, max_parked=3)
    assert [lim.park("a") for _ in range(3)] == [None] * 3
    r = lim.park("a")
    assert r is not None and r.retry_after_s == 1
    assert lim.park("b") is None  # another caller
    lim.unpark("a")
    assert lim.park("a") is None and lim.parked("a") == 3
    for _ in range(3):
        lim.unpark("a")
    assert lim.parked("a") == 0 and "a" not in lim._parked


@settings(max_examples=300, deadline=None)
@given(rate=st.floats(0.1, 50), burst=st.integers(0, 20),
       bursts=st.lists(st.tuples(st.one_of(st.floats(0, 1), st.floats(0, 60)), st.integers(1, 40)),
                       min_size=1, max_size=40),
       window=st.floats(0, 20))
def test_accepted_in_any_window_is_at_most_burst_plus_rate_times_window(
        rate: float, burst: int, bursts: list[tuple[float, int]], window: float) -> None:
    """Any request pattern (runs of requests at one instant after a pause of any length)."""
    clock = Clock()
    lim = Limits(rate, burst, clock=clock)
    size = default_burst(rate, burst)
    accepted = []
    for gap, n in bursts:
        clock.t += gap
        accepted += [clock.t for _ in range(n) if lim.take("k") is None]
    for i, start in enumerate(accepted):  # every window that starts at an accepted request
        n = bisect.bisect_right(accepted, start + window) - i
        assert n <= size + rate * window + 1e-6, (n, size, rate, window)


# ---- the client's retry budget --------------------------------------------------------


def test_the_client_waits_retry_after_within_its_retries() -> None:
    r = CallRetry(Policy(retries=2), 1)
    assert r.next_delay(Outcome.RATE_LIMITED, 3.0) == 3.0
    assert r.next_delay(Outcome.RATE_LIMITED, 3600.0) == MAX_RETRY_AFTER_S
    assert r.next_delay(Outcome.RATE_LIMITED, 1.0) is None  # the budget is spent
    assert CallRetry(Policy(retries=0), 1).next_delay(Outcome.RATE_LIMITED, 1.0) is None


# ---- the token file -------------------------------------------------------------------


def test_a_token_may_carry_its_own_rate_and_old_files_read(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    tokens.create(f, "old", "viewer", ["*"])
    tokens.create(f, "own", "worker", ["*"], rate=2.5, burst=4)
    tokens.create(f, "free", "worker", ["*"], rate=0)
    text = f.read_text()
    assert text.count("rate = ") == 2 and text.count("burst = ") == 1
    by = {e.name: e for e in tokens.load(f)}
    assert (by["old"].rate, by["old"].burst) == (None, None)
    assert (by["own"].rate, by["own"].burst) == (2.5, 4) and by["free"].rate == 0
    assert tokens.parse(text.replace("rate = 2.5", "rate = 3"))[1].rate == 3.0  # an int reads
    for bad in ("rate = -1", "rate = nan", "burst = 0"):
        with pytest.raises(tokens.TokenFileError):
            tokens.parse(text.replace("rate = 2.5", bad).replace("burst = 4", bad))
    with pytest.raises(ValueError):
        tokens.create(f, "bad", "viewer", ["*"], rate=-1)


ROLES_TOML = "[roles.worker]\nrate = 7.0\nburst = 3\n\n[roles.viewer]\nrate = 0\n"


def test_roles_carry_default_rates_that_create_and_revoke_keep(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text(ROLES_TOML)  # written by hand, then the CLI's create and revoke
    tokens.create(f, "w", "worker", ["*"])
    tokens.create(f, "gone", "viewer", ["*"])
    tokens.revoke(f, "gone")
    file = tokens.load_file(f)
    assert file.roles == {"worker": tokens.RoleLimit(7.0, 3), "viewer": tokens.RoleLimit(0.0)}
    assert [e.name for e in file.entries] == ["w"]
    assert tokens.read(f.read_text()) == file  # rendered as read
    for bad, why in (("[roles.king]\nrate = 1\n", "no such role"),
                     ("[roles.worker]\nrate = -1\n", "rate"),
                     ("[roles.worker]\nburst = 0\n", "burst"),
                     ("[roles.worker]\nrps = 1\n", "rps")):
        with pytest.raises(tokens.TokenFileError, match=why):
            tokens.parse(bad)


def test_token_list_shows_the_limit_each_token_gets_and_the_role_tables(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text(ROLES_TOML + "\n[roles.producer]\nburst = 9\n")
    tokens.create(f, "w", "worker", ["*"])
    tokens.create(f, "w-own", "worker", ["*"], rate=2.0)
    tokens.create(f, "v", "viewer", ["*"])
    tokens.create(f, "p", "producer", ["*"])
    tokens.create(f, "a", "admin", ["*"])
    run = [sys.executable, "-m", "tqd", "token", "list", "--auth", str(f)]
    out = subprocess.run(run, capture_output=True, text=True, check=True).stdout.splitlines()
    rate = {line.split()[0]: line[out[0].index("RATE"):out[0].index("CREATED")].strip() for line in out[1:6]}
    assert rate == {"w": "7/s burst 3 (role)", "w-own": "2/s burst 3 (role)", "v": "not limited (role)",
                    "p": "server's burst 9 (role)", "a": "-"}, out
    assert out[6:] == ["[roles.producer]: server's burst 9 for its tokens that set none",
                       "[roles.viewer]: not limited for its tokens that set none",
                       "[roles.worker]: 7/s burst 3 for its tokens that set none"], out
    lines = subprocess.run([*run, "--json"], capture_output=True, text=True, check=True).stdout
    got = {d["name"]: (d["rate"], d["burst"], d["role_rate"], d["role_burst"])
           for d in map(json.loads, lines.splitlines())}
    assert got == {"w": (None, None, 7.0, 3), "w-own": (2.0, None, 7.0, 3), "v": (None, None, 0.0, None),
                   "p": (None, None, None, 9), "a": (None, None, None, None)}


def test_a_tokens_own_rate_wins_over_its_roles_which_wins_over_the_flag() -> None:
    roles = {"worker": tokens.RoleLimit(7.0, 3), "producer": tokens.RoleLimit(burst=9)}
    h = tokens.hash_token("tqd_00000000_x", salt=b"0123456789abcdef")

    def who(role: tokens.Role, rate: float | None = None, burst: int | None = None) -> Principal:
        return principal(tokens.Entry("n", "00000000", role, h, rate=rate, burst=burst), roles)

    assert (who("worker").rate, who("worker").burst) == (7.0, 3)  # the role's
    assert (who("worker", 0.0).rate, who("worker", 0.0).burst) == (0.0, 3)  # each field alone
    assert (who("worker", 2.0, 50).rate, who("worker", 2.0, 50).burst) == (2.0, 50)
    assert (who("producer").rate, who("producer").burst) == (None, 9)  # rate: the flag's
    assert (who("viewer").rate, who("viewer").burst) == (None, None)  # no table: the flags
    # and the bucket: a rate of None is the flag's, so the three levels stack
    lim = Limits(100, 100, clock=Clock())
    assert [lim.take("w", who("worker").rate, who("worker").burst) for _ in range(4)].count(None) == 3
    assert [lim.take("v", who("viewer").rate, who("viewer").burst) for _ in range(101)].count(None) == 100


async def test_a_roles_rate_changes_on_reload(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text(ROLES_TOML)
    token = tokens.create(f, "w", "worker", ["*"])[0]
    f.chmod(0o600)
    authn = Authenticator(str(f), "")
    try:
        assert (await authn.authenticate(f"Bearer {token}")).rate == 7.0
        f.write_text(f.read_text().replace("rate = 7.0", "rate = 1.5"))
        await authn.reload()
        assert (await authn.authenticate(f"Bearer {token}")).rate == 1.5
    finally:
        authn.close()


# ---- the real server ------------------------------------------------------------------

# the module's server: --rate-limit-rps 5 --rate-limit-burst 5; admin tokens (role
# defaults in the file for viewers only) and the viewers of VIEWERS
VIEWER_ROLE = "[roles.viewer]\nrate = 1.0\nburst = 2\n"
VIEWERS = {"role": {}, "role-own": {"rate": 3.0, "burst": 3}, "role-free": {"rate": 0.0}}
TOKENS = {"a": {}, "b": {}, "own": {"rate": 1.0, "burst": 2}, "free": {"rate": 0.0},
          "park": {"rate": 0.0}, "park2": {"rate": 0.0}, "cli": {"rate": 1.0, "burst": 1},
          "cli0": {"rate": 1.0, "burst": 1}, "wk4": {"rate": 4.0, "burst": 2},
          "wk0": {"rate": 4.0, "burst": 2}}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    d = tmp_path_factory.mktemp("rl")
    (d / "tokens.toml").write_text(VIEWER_ROLE)
    toks = {name: tokens.create(d / "tokens.toml", name, "admin", ["*"], **kw)[0]  # type: ignore[arg-type]
            for name, kw in TOKENS.items()}
    toks |= {name: tokens.create(d / "tokens.toml", name, "viewer", ["*"], **kw)[0]  # type: ignore[arg-type]
             for name, kw in VIEWERS.items()}
    s = ServerProcess(d / "data", "--auth", str(d / "tokens.toml"), "--rate-limit-rps", "5",
                      "--rate-limit-burst", "5").start()
    yield s, toks
    rc = s.stop()
    assert rc == 0 and b"Traceback" not in s.log, s.log.decode(errors="replace")


def _get(url: str, path: str, token: str | None = None, source: str | None = None,
         headers: dict[str, str] | None = None) -> Resp:
    api = Api(url)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection(api.host, api.port, timeout=15,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers=h)
        r = conn.getresponse()
        return Resp(r.status, r.headers, r.read())
    finally:
        conn.close()


def _until_refused(url: str, token: str | None = None, source: str | None = None,
                   n: int = 50) -> tuple[int, Resp, float]:
    """GETs of a /v1 route until the first 429: (how many passed, the 429, seconds taken)."""
    t0 = time.monotonic()
    for i in range(n):
        r = _get(url, "/v1/queues/rl", token, source)
        if r.status == 429:
            return i, r, time.monotonic() - t0
        assert r.status == 200, r
    raise AssertionError(f"{n} requests passed")


def _check_429(r: Resp) -> None:
    body = r.json()
    assert r.status == 429 and body["error"] == "rate_limited" and body["message"], r
    ra = r.headers["Retry-After"]
    assert ra.isdigit() and int(ra) >= 1 and body["retry_after"] == int(ra)


def _passed_ok(passed: int, burst: int, rate: float, took: float) -> bool:
    """The burst passed (and no more than the refill of the time it took)."""
    return burst <= passed <= burst + math.floor(rate * took)


def test_past_the_burst_429_with_retry_after(srv: tuple[ServerProcess, dict[str, str]]) -> None:
    s, toks = srv
    passed, r, took = _until_refused(s.url, toks["a"])
    assert _passed_ok(passed, 5, 5, took), (passed, took)
    _check_429(r)
    # another token has a bucket of its own
    passed, r, took = _until_refused(s.url, toks["b"])
    assert _passed_ok(passed, 5, 5, took), (passed, took)
    # health, readiness, metrics and this document are never limited
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json") * 10:
        assert _get(s.url, path, toks["a"]).status == 200, path


def test_a_tokens_own_rate_wins(srv: tuple[ServerProcess, dict[str, str]]) -> None:
    s, toks = srv
    passed, r, took = _until_refused(s.url, toks["own"])
    assert _passed_ok(passed, 2, 1, took), (passed, took)
    _check_429(r)
    assert "1 requests per second" in r.json()["message"]
    for _ in range(30):  # rate 0: not limited
        assert _get(s.url, "/v1/queues/rl", toks["free"]).status == 200


def test_a_roles_rate_wins_over_the_flag_and_a_tokens_over_its_roles(
        srv: tuple[ServerProcess, dict[str, str]]) -> None:
    s, toks = srv
    passed, r, took = _until_refused(s.url, toks["role"])  # the viewers' table: 1/s, burst 2
    assert _passed_ok(passed, 2, 1, took), (passed, took)
    _check_429(r)
    assert "1 requests per second (burst 2)" in r.json()["message"]
    passed, r, took = _until_refused(s.url, toks["role-own"])  # its own: 3/s, burst 3
    assert _passed_ok(passed, 3, 3, took), (passed, took)
    assert "3 requests per second (burst 3)" in r.json()["message"]
    for _ in range(30):  # its own rate 0: not limited, whatever its role's
        assert _get(s.url, "/v1/queues/rl", toks["role-free"]).status == 200


def _audit(log: bytes) -> list[dict[str, object]]:
    return [json.loads(line.split(b"tqd.audit: ", 1)[1]) for line in log.splitlines()
            if b" tqd.audit: " in line]


def test_the_parked_long_poll_cap(srv: tuple[ServerProcess, dict[str, str]]) -> None:
    s, toks = srv
    for name in ("park", "park2"):  # known (scrypt done) before the 100 come at once
        assert _get(s.url, "/v1/queues/rl", toks[name]).status == 200

    async def go() -> tuple[list[int], int, int, tuple[int, int]]:
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(s.url, connector=conn) as http_:
            async def lease(token: str, wait: float) -> int:
                async with http_.post("/v1/lease", json={"queues": ["parked"], "wait": wait},
                                      headers={"Authorization": f"Bearer {token}"}) as r:
                    await r.read()
                    return r.status

            parked = [asyncio.ensure_future(lease(toks["park"], 2.5)) for _ in range(100)]
            await asyncio.sleep(1.0)  # all of them parked
            async with http_.post("/v1/lease", json={"queues": ["parked"], "wait": 1},
                                  headers={"Authorization": f"Bearer {toks['park']}"}) as r:
                over, ra = r.status, int(r.headers.get("Retry-After", "0"))
            no_wait = await lease(toks["park"], 0)  # a lease that does not wait is not parked
            other = await lease(toks["park2"], 0.1)  # another token parks
            return list(await asyncio.gather(*parked)), over, ra, (no_wait, other)

    statuses, over, ra, rest = asyncio.run(go())
    assert statuses == [204] * 100
    assert (over, ra) == (429, 1)
    assert rest == (204, 204)
    deadline = time.monotonic() + 5
    while True:  # the refusal is in the audit log (the server's stderr, as it comes)
        lines = [x for x in _audit(b"".join(s._tail)) if x["outcome"] == "rate_limited"
                 and x["who"] == "park"]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert lines and lines[0]["audit"] == "denied" and lines[0]["path"] == "/v1/lease"


def _count_429(url: str, route: str) -> int:
    text = _get(url, "/metrics").body.decode()
    n = 0
    for line in text.splitlines():
        if line.startswith("tqd_http_request_duration_seconds_count{") and \
                f'route="{route}"' in line and 'status="429"' in line:
            n += int(float(line.rsplit(" ", 1)[1]))
    return n


def test_the_client_waits_out_retry_after(srv: tuple[ServerProcess, dict[str, str]]) -> None:
    s, toks = srv
    route = "/v1/queues/{queue}"
    before = _count_429(s.url, route)
    with tqd.SyncClient(s.url, token=toks["cli"], retries=4) as c:
        for _ in range(3):  # rate 1/s, burst 1: the 2nd and 3rd are refused once each
            assert c.queue("rl").queued == 0
    # waited its Retry-After each time: exactly one 429 per refused call (a client that
    # retried sooner would have been refused again)
    assert _count_429(s.url, route) - before == 2
    with tqd.SyncClient(s.url, token=toks["cli0"], retries=0) as c:
        c.queue("rl")
        with pytest.raises(tqd.RateLimited) as e:
            c.queue("rl")
        assert e.value.code == "rate_limited" and e.value.extra["retry_after"] >= 1


@pytest.mark.parametrize("retries", [4, 0])
def test_a_worker_past_its_limit_slows_down(srv: tuple[ServerProcess, dict[str, str]],
                                            monkeypatch: pytest.MonkeyPatch, retries: int) -> None:
    """Through the client (it waits out Retry-After), and, with a client that does not
    retry, in the worker's own lease loop (a --burst worker goes on instead of stopping)."""
    s, toks = srv
    queue = f"rlw{retries}"
    with tqd.SyncClient(s.url, token=toks["free"]) as c:
        ids = [c.enqueue(queue, "echo", i).id for i in range(4)]
    monkeypatch.setattr(worker_mod, "Client", functools.partial(tqd.Client, retries=retries))
    routes = ("/v1/lease", "/v1/ack")
    before = sum(_count_429(s.url, r) for r in routes)
    w = tqd.Worker(s.url, queues=[queue], token=toks[f"wk{retries}"], concurrency=1, burst=True)

    @w.task("echo")
    def echo(job: tqd.JobContext) -> object:
        return job.payload

    asyncio.run(w.run())
    assert w.jobs_done == 4
    with tqd.SyncClient(s.url, token=toks["free"]) as c:
        assert [c.get(i).state for i in ids] == ["completed"] * 4
    assert sum(_count_429(s.url, r) for r in routes) > before  # it was held back


def test_without_auth_the_client_address_is_the_key(
        server_factory: type[ServerProcess], tmp_path: Path) -> None:
    s = server_factory(tmp_path / "d", "--rate-limit-rps", "5", "--rate-limit-burst", "5").start()
    passed, r, took = _until_refused(s.url, source="127.0.0.1")
    assert _passed_ok(passed, 5, 5, took), (passed, took)
    _check_429(r)
    # X-Forwarded-For is not believed: the same address, the same (empty) bucket
    assert _get(s.url, "/v1/queues/rl", source="127.0.0.1",
                headers={"X-Forwarded-For": "10.9.9.9"}).status == 429
    # another address has its own bucket
    passed, r, took = _until_refused(s.url, source="127.0.0.2")
    assert _passed_ok(passed, 5, 5, took), (passed, took)
    assert _get(s.url, "/healthz", source="127.0.0.1").status == 200
    assert s.stop() == 0
    denied = [x for x in _audit(s.log) if x["outcome"] == "rate_limited"]
    assert {x["from"] for x in denied} == {"127.0.0.1", "127.0.0.2"}
    assert all(x["who"] is None and x["status"] == 429 and x["refused"] >= 1 for x in denied)


def test_queue_full_is_not_retried(server_factory: type[ServerProcess], tmp_path: Path) -> None:
    s = server_factory(tmp_path / "d", "--queue-max-depth", "1").start()
    with tqd.SyncClient(s.url, retries=4) as c:
        c.enqueue("full", "t", 1)
        with pytest.raises(tqd.QueueFull):
            c.enqueue("full", "t", 2)
    assert _count_429(s.url, "/v1/queues/{queue}/jobs") == 1  # one try, not five
    assert s.stop() == 0


def test_without_auth_and_limits_only_managing_calls_pass_the_gate(tmp_path: Path) -> None:
    """The gate is decided once per route: with neither --auth nor a rate limit, requests
    skip authorize altogether but for the managing calls (audited with or without auth)."""
    def gated(authn: Authenticator | None, lim: Limits | None) -> set[str]:
        return {f"{r.method} {r.path}" for r in ROUTES
                if http_auth.gate(authn, lim, r.need, r.handler.__name__, r.limited) is not None}

    manage = {f"{r.method} {r.path}" for r in ROUTES if r.need.right is Right.MANAGE}
    assert manage and gated(None, None) == manage
    limited = {f"{r.method} {r.path}" for r in ROUTES if r.limited}
    assert gated(None, Limits(5)) == manage | limited
    tokens.create(tmp_path / "t.toml", "a", "admin", ["*"])
    authn = Authenticator(str(tmp_path / "t.toml"), "")
    try:  # with auth every route but the open ones
        assert gated(authn, None) == {f"{r.method} {r.path}" for r in ROUTES
                                      if r.need.right is not Right.OPEN}
    finally:
        authn.close()


def test_every_v1_route_but_replication_is_limited() -> None:
    limited = {r.path for r in ROUTES if r.limited}
    assert all(p.startswith("/v1/") and not p.startswith("/v1/_repl/") for p in limited)
    assert {r.path for r in ROUTES if r.path.startswith("/v1/") and not r.limited} == {
        "/v1/_repl/log", "/v1/_repl/snapshot"}
