"""A really full disk (a small tmpfs, as LMDB meets it: EIO/ENOSPC on commit).

Writes get 507 storage_full in the protocol's shape with one log line, reads
go on, long-polls caught in a failed batch are not served later, and once
there is room again writes land.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _http import Api, assert_error, running


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_gives_507_and_recovers(small_fs: Path) -> None:
    reserve = small_fs / "reserve"
    reserve.write_bytes(b"\0" * 600_000)  # room handed back later
    with running(small_fs / "data", "--map-size-bytes", str(64 << 20)) as (srv, api):
        stored = []
        for _ in range(500):
            r = api.enqueue("q", {"payload": "x" * 20_000})
            if r.status != 201:
                assert_error(r, 507, "storage_full")
                break
            stored.append(r.json()["id"])
        else:
            pytest.fail("the 3 MB file system never filled")
        assert stored and api.job(stored[0])["state"] == "queued"  # reads still work
        assert api.request("GET", "/healthz").status == 200

        # long-polls sent together with enqueues that cannot commit: whatever a long-poll
        # got (507 with the failed batch, or 204 after waiting), it must not be served later
        answers: list[int] = []

        def poll() -> None:
            answers.append(Api(api.url).lease(["p"], wait=1).status)

        def put() -> None:
            answers.append(Api(api.url).enqueue("p", {"payload": "y" * 20_000}).status)

        threads = [threading.Thread(target=f) for _ in range(15) for f in (poll, put)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(answers) <= {204, 507}, answers
        assert 507 in answers

        reserve.unlink()
        small = [api.enqueue_ok("p", {"payload": i}) for i in range(10)]
        stats = api.stats("p")
        assert stats["active"] == 0 and stats["queued"] == 10, stats  # nobody took them
        assert {j["id"] for j in api.lease_jobs(["p"], max=100)} == set(small)
    log = srv.log.decode(errors="replace")
    assert log.count("storage full") == 1, log
