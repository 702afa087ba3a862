"""The raw limit: msgspec-encode a job record + LMDB put, fsync'd transactions, no HTTP.

``sync=True, metasync=True`` as tqd opens its store; the temp dir is on the
same file system as the other runs' data dirs. Measured at 1, 100 and 1000
puts per transaction so tqd's rates can be read as a fraction of the disk +
LMDB + encoding limit.
Standalone: python bench/raw_lmdb.py [--quick]
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any

import lmdb
import msgspec
from common import TempDir

SCENARIO = "raw_lmdb"
_KEY = struct.Struct(">Q")


class Rec(msgspec.Struct, array_like=True):
    id: str
    queue: str
    type: str | None
    payload: bytes
    priority: int
    max_attempts: int
    timeout: float
    created_at: float


def measure(path: str, per_txn: int, dur_s: float, max_puts: int) -> dict[str, Any]:
    env = lmdb.open(path, map_size=8 << 30, sync=True, metasync=True, max_dbs=2, subdir=True)
    try:
        db = env.open_db(b"jobs")
        enc = msgspec.msgpack.Encoder()
        payload = b'{"n":1,"c":0,"t":1795425319.6204267}'
        n = txns = 0
        t0 = time.perf_counter()
        end = t0 + dur_s
        while n < max_puts and time.perf_counter() < end:
            with env.begin(write=True, db=db) as txn:
                for _ in range(per_txn):
                    rec = Rec(f"{n:018x}", "bench", None, payload, 5, 10, 60.0, time.time())
                    txn.put(_KEY.pack(n), enc.encode(rec))
                    n += 1
            txns += 1
        secs = time.perf_counter() - t0
    finally:
        env.close()
    return {"puts": n, "txns": txns, "seconds": secs, "jobs_per_s": n / secs, "txn_per_s": txns / secs}


def run(target: Any, opts: Any) -> list[dict[str, Any]]:
    out = []
    for per_txn in (1, 100, 1000):
        tmp = TempDir("bench-raw-")
        os.sync()  # start from a clean page cache: earlier runs' write-back would skew fsync times
        try:
            r = measure(str(tmp.path / "lmdb"), per_txn, opts.raw_s, 50_000_000)
        finally:
            tmp.cleanup()
        out.append({"scenario": SCENARIO, "target": "lmdb+msgspec", "puts_per_txn": per_txn, **r})
    return out


if __name__ == "__main__":
    from run import main

    raise SystemExit(main(only=SCENARIO))
