"""The leader lease's storage (tqd.cluster.lease): one conformance suite run against the
file store (flock, tmp_path) and the S3 store (obstore against moto's S3 server, which
enforces conditional writes); then what only one backend has: races across processes
(file), a look-alike that ignores conditions, error answers and dead endpoints (S3).
Nothing is mocked: every write reaches a real file system or a real HTTP server."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from _s3 import MotoS3, closed_port, moto_s3, naive_s3, s3_env, silent_port

from tqd.cluster.lease import (
    LEASE_KEY,
    Lease,
    LeaseConflict,
    LeaseStore,
    LeaseStoreError,
    LeaseStoreUnsafe,
    open_lease_store,
)

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 2.0


def lease(holder: str | None = "node-a", *, term: int = 1, renew_seq: int = 0) -> Lease:
    return Lease(holder=holder, incarnation="inc-1", addr="http://10.0.0.1:7070", term=term,
                 renew_seq=renew_seq, ttl_ms=10_000, isr=["node-a"])


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3]:
    with moto_s3() as m:
        yield m


@pytest.fixture
def use_s3(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Point the AWS_* environment (the daemon's only source) at an endpoint."""

    def use(endpoint: str) -> None:
        for k in list(os.environ):
            if k.startswith("AWS_"):
                monkeypatch.delenv(k)
        for k, v in s3_env(endpoint).items():
            monkeypatch.setenv(k, v)

    return use


@dataclass
class Backend:
    url: str
    store: LeaseStore
    put_raw: Callable[[bytes], None]  # write the lease object's bytes behind the store's back


@pytest.fixture(params=["file", "s3"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path, moto: MotoS3,
                  use_s3: Callable[[str], None]) -> AsyncIterator[Backend]:
    if request.param == "file":
        root = tmp_path / "cluster"

        def put_raw(body: bytes) -> None:
            (root / "leader").mkdir(parents=True, exist_ok=True)
            (root / LEASE_KEY).write_bytes(body)

        url = root.as_uri()
    else:
        use_s3(moto.endpoint)
        bucket = moto.bucket()

        def put_raw(body: bytes) -> None:
            moto.client.put_object(Bucket=bucket, Key=f"tqd/test/{LEASE_KEY}", Body=body)

        url = f"s3://{bucket}/tqd/test"
    store = open_lease_store(url, timeout_s=TIMEOUT_S)
    yield Backend(url, store, put_raw)
    await store.close()


# The conformance suite: both backends.


async def test_absent_lease_reads_none(backend: Backend) -> None:
    assert await backend.store.read() is None


async def test_create_then_read_then_create_again_conflicts(backend: Backend) -> None:
    store = backend.store
    etag = await store.create(lease())
    assert await store.read() == (lease(), etag)
    with pytest.raises(LeaseConflict):
        await store.create(lease("node-b", renew_seq=1))
    assert await store.read() == (lease(), etag)


async def test_swap_with_current_etag_replaces_the_lease(backend: Backend) -> None:
    store = backend.store
    etag = await store.create(lease())
    new = lease("node-b", term=2, renew_seq=1)
    etag2 = await store.swap(new, etag)
    assert etag2 != etag
    assert await store.read() == (new, etag2)
    released = lease(None, term=2, renew_seq=2)  # a clean hand-over keeps the term
    etag3 = await store.swap(released, etag2)
    assert await store.read() == (released, etag3)


async def test_swap_with_stale_etag_conflicts_and_changes_nothing(backend: Backend) -> None:
    store = backend.store
    stale = await store.create(lease())
    current = await store.swap(lease(renew_seq=1), stale)
    with pytest.raises(LeaseConflict):
        await store.swap(lease("node-b", term=2, renew_seq=2), stale)
    assert await store.read() == (lease(renew_seq=1), current)


async def test_swap_on_missing_lease_conflicts(backend: Backend) -> None:
    etag = await backend.store.create(lease())  # an etag that is valid elsewhere...
    other = open_lease_store(backend.url + "-other", timeout_s=TIMEOUT_S)  # ...and no lease here
    with pytest.raises(LeaseConflict):
        await other.swap(lease(), etag)
    assert await other.read() is None


async def test_renew_seq_makes_every_etag_new(backend: Backend) -> None:
    """Etags come from the content: the same body twice has the same etag (the ABA
    hazard), which is why every write bumps renew_seq."""
    store = backend.store
    first = await store.create(lease(renew_seq=1))
    second = await store.swap(lease(renew_seq=2), first)  # identical but for renew_seq
    assert second != first
    with pytest.raises(LeaseConflict):
        await store.swap(lease(renew_seq=3), first)
    back = await store.swap(lease(renew_seq=1), second)  # A -> B -> A without the bump...
    assert back == first  # ...and a CAS holding A's old etag would succeed


async def test_concurrent_swaps_from_one_etag_have_one_winner(backend: Backend) -> None:
    store = backend.store
    for rnd in range(3):
        got = await store.read() if rnd else None
        etag = got[1] if got else await store.create(lease())

        async def attempt(i: int, etag: str = etag, rnd: int = rnd) -> tuple[str, str] | None:
            try:
                return f"node-{i}", await store.swap(lease(f"node-{i}", term=rnd + 2), etag)
            except LeaseConflict:
                return None

        winners = [w for w in await asyncio.gather(*(attempt(i) for i in range(16))) if w]
        assert len(winners) == 1, winners
        holder, new_etag = winners[0]
        assert await store.read() == (lease(holder, term=rnd + 2), new_etag)


async def test_self_test_passes_and_leaves_the_lease_alone(backend: Backend) -> None:
    store = backend.store
    await store.self_test()
    assert await store.read() is None
    etag = await store.create(lease())
    await store.self_test()
    assert await store.read() == (lease(), etag)


@pytest.mark.parametrize("body, what", [
    (b"\x00\xffnot json", "not a valid lease"),
    (b'{"v": 1, "holder": "node-a", "ttl_ms": 1000}', "term"),
    (b'{"holder": "node-a", "term": "one", "ttl_ms": 1000}', "term"),
    (b"[]", "not a valid lease"),
    (b" " * (64 * 1024 + 1), "not a lease"),
])
async def test_a_body_that_is_not_a_lease_is_a_store_error(backend: Backend, body: bytes,
                                                           what: str) -> None:
    backend.put_raw(body)
    with pytest.raises(LeaseStoreError, match=what):
        await backend.store.read()


async def test_unknown_fields_are_ignored(backend: Backend) -> None:
    """A newer node may add fields; an older one reads the rest."""
    backend.put_raw(b'{"v": 2, "holder": "n", "term": 7, "ttl_ms": 500, "cluster": "prod-a"}')
    got = await backend.store.read()
    assert got is not None
    assert got[0] == Lease(v=2, holder="n", term=7, ttl_ms=500)


# The file store.


async def test_file_store_layout_and_description(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    store = open_lease_store(f"file://{root}", timeout_s=TIMEOUT_S)
    assert store.description == root.as_uri()
    await store.create(lease())
    assert msgspec.json.decode((root / "leader" / "lease.json").read_bytes()) == \
        msgspec.to_builtins(lease())
    names = ["lease.json", "lease.json.lock"]
    assert sorted(p.name for p in (root / "leader").iterdir()) == names
    await store.self_test()  # the probe and its lock are removed
    assert sorted(p.name for p in (root / "leader").iterdir()) == names


@pytest.mark.timeout(10)
async def test_file_store_gives_up_on_a_lock_held_too_long(tmp_path: Path) -> None:
    store = open_lease_store(tmp_path.as_uri(), timeout_s=0.2)
    etag = await store.create(lease())
    with (tmp_path / "leader" / "lease.json.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(LeaseStoreError, match="held by another writer"):
            await store.swap(lease(renew_seq=1), etag)
    assert await store.swap(lease(renew_seq=1), etag)


WORKER = """
import asyncio, sys
from tqd.cluster.lease import Lease, LeaseConflict, open_lease_store

async def main(url, name):
    store = open_lease_store(url, timeout_s=10)
    print("ready", flush=True)
    for line in sys.stdin:
        rnd, etag = line.split()
        async def one(t):
            who = f"{name}-{t}"
            try:
                new = await store.swap(Lease(holder=who, term=int(rnd), ttl_ms=1000), etag)
            except LeaseConflict:
                return "-"
            return f"{who}={new}"
        print(" ".join(await asyncio.gather(*(one(t) for t in range(3)))), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_file_store_swaps_race_across_processes(tmp_path: Path) -> None:
    """6 processes x 3 threads swap from the same etag, round after round: one winner."""
    url = tmp_path.as_uri()
    store = open_lease_store(url, timeout_s=TIMEOUT_S)
    asyncio.run(store.create(lease()))
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, f"p{i}"], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) for i in range(6)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        for rnd in range(2, 6):
            got = asyncio.run(store.read())
            assert got is not None
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(f"{rnd} {got[1]}\n")
                p.stdin.flush()
            results = [w for p in procs if p.stdout for w in p.stdout.readline().split()]
            winners = [w.split("=") for w in results if w != "-"]
            assert len(results) == 18 and len(winners) == 1, results
            (holder, etag), = winners
            assert asyncio.run(store.read()) == (Lease(holder=holder, term=rnd, ttl_ms=1000), etag)
    finally:
        for p in procs:
            if p.stdin:
                p.stdin.close()
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(10))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
            if p.stdout:
                p.stdout.close()
    assert codes == [0] * len(procs)


# The S3 store: a look-alike that ignores conditions, error answers, dead endpoints.


async def test_self_test_refuses_a_store_that_ignores_conditions(
        use_s3: Callable[[str], None]) -> None:
    with naive_s3() as naive:
        use_s3(naive.endpoint)
        store = open_lease_store("s3://bucket-x/tqd", timeout_s=TIMEOUT_S)
        etag = await store.create(lease())  # it works, as far as it goes...
        assert await store.read() == (lease(), etag)
        with pytest.raises(LeaseStoreUnsafe) as e:
            await store.self_test()
        assert f"s3://bucket-x/tqd at {naive.endpoint}" in str(e.value)
        assert "create-only" in str(e.value)
        assert not [k for k in naive.objects if "probe" in k]  # the probe was removed


async def test_self_test_refuses_a_store_that_ignores_only_if_match(
        use_s3: Callable[[str], None]) -> None:
    """A store that enforces If-None-Match but ignores If-Match is as unsafe."""
    with naive_s3() as naive:
        naive.honour_if_none_match = True
        use_s3(naive.endpoint)
        store = open_lease_store("s3://bucket-x", timeout_s=TIMEOUT_S)
        await store.create(lease())
        with pytest.raises(LeaseConflict):
            await store.create(lease())
        with pytest.raises(LeaseStoreUnsafe, match="compare-and-swap"):
            await store.self_test()


@pytest.mark.parametrize("status, code, error, tries", [
    # A concurrent conditional write: obstore retries a swap once, as AWS advises.
    (409, "ConditionalRequestConflict", LeaseConflict, (1, 2)),
    (412, "PreconditionFailed", LeaseConflict, (1, 1)),
    # Retried once, never more: a lease cannot wait for obstore's default 10 retries.
    (503, "SlowDown", LeaseStoreError, (2, 2)),
    (500, "InternalError", LeaseStoreError, (2, 2)),
    (403, "AccessDenied", LeaseStoreError, (1, 1)),
])
async def test_s3_answers_map_to_lease_errors(use_s3: Callable[[str], None], status: int,
                                              code: str, error: type[Exception],
                                              tries: tuple[int, int]) -> None:
    with naive_s3() as naive:
        use_s3(naive.endpoint)
        store = open_lease_store("s3://bucket-x/p", timeout_s=TIMEOUT_S)
        etag = await store.create(lease())
        naive.put_status, naive.put_code, naive.puts = status, code, 0
        with pytest.raises(error, match=f"s3://bucket-x/p at {naive.endpoint}: create"):
            await store.create(lease())
        assert naive.puts == tries[0]
        with pytest.raises(error, match=f"s3://bucket-x/p at {naive.endpoint}: swap"):
            await store.swap(lease(renew_seq=1), etag)
        assert naive.puts == sum(tries)


async def test_a_missing_bucket_is_not_a_conflict(moto: MotoS3,
                                                  use_s3: Callable[[str], None]) -> None:
    use_s3(moto.endpoint)
    store = open_lease_store("s3://no-such-bucket-here/p", timeout_s=TIMEOUT_S)
    with pytest.raises(LeaseStoreError, match="does the bucket exist"):
        await store.create(lease())
    with pytest.raises(LeaseStoreError, match="does the bucket exist"):
        await store.self_test()


@pytest.mark.timeout(30)  # obstore's own defaults would retry for minutes
async def test_an_unreachable_store_fails_fast(use_s3: Callable[[str], None]) -> None:
    use_s3(closed_port())
    store = open_lease_store("s3://bucket-x/p", timeout_s=1.0)
    calls: list[Callable[[], Awaitable[object]]] = [
        store.read, lambda: store.create(lease()), lambda: store.swap(lease(), '"abc"'),
        store.self_test]
    for call in calls:
        with pytest.raises(LeaseStoreError, match="s3://bucket-x/p at http://127.0.0.1:"):
            await call()


@pytest.mark.timeout(30)
async def test_a_store_that_never_answers_times_out(use_s3: Callable[[str], None]) -> None:
    with silent_port() as endpoint:
        use_s3(endpoint)
        store = open_lease_store("s3://bucket-x/p", timeout_s=0.3)
        with pytest.raises(LeaseStoreError):
            await store.read()
        with pytest.raises(LeaseStoreError):
            await store.swap(lease(), '"abc"')


# Opening a store.


@pytest.mark.parametrize("url", [
    "http://example.com/x", "/abs/dir", "file://relative/dir", "file:relative/dir",
    "s3://", "s3:///prefix", "s3://user:secret@bucket/p", "s3://bucket:9000/p",
    "s3://bucket/a//b", "s3://bucket/a/../b", "s3://bucket/p?region=x", "file:///x#y", "",
])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="lease store URL"):
        open_lease_store(url, timeout_s=1)


@pytest.mark.parametrize("timeout_s", [0, -1, float("nan"), float("inf")])
def test_bad_timeouts_are_refused(timeout_s: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        open_lease_store("file:///tmp/x", timeout_s=timeout_s)


def test_good_urls(use_s3: Callable[[str], None]) -> None:
    assert open_lease_store("file:///var/lib/tqd/c", timeout_s=1).description == \
        "file:///var/lib/tqd/c"
    assert open_lease_store("file://localhost/var/x%20y", timeout_s=1).description == \
        "file:///var/x%20y"
    use_s3("http://127.0.0.1:9")
    assert open_lease_store("s3://b-1/", timeout_s=1).description == "s3://b-1 at http://127.0.0.1:9"
    assert open_lease_store("s3://b-1/a/b/", timeout_s=1).description == \
        "s3://b-1/a/b at http://127.0.0.1:9"
