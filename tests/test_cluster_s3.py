"""The cluster with its lease in S3 (moto's server, which enforces conditional writes, as
AWS does): failover, the store going away and coming back, and a look-alike that ignores
conditional writes refused at start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cluster import Cluster, free_port, get_json
from _http import Api
from _s3 import moto_s3, naive_s3, s3_env
from moto.server import ThreadedMotoServer

pytestmark = pytest.mark.timeout(180)


def test_failover_with_the_lease_in_s3(tmp_path: Path) -> None:
    with moto_s3() as s3:
        bucket = s3.bucket()
        with Cluster(tmp_path, lease=f"s3://{bucket}/tqd/prod", env=s3_env(s3.endpoint)).start() as c:
            old = c.settled()
            jid = Api(old.url).enqueue_ok("q", {"payload": "x"})
            old.kill()
            new = c.leader(exclude=old)
            assert get_json(f"{new.url}/v1/jobs/{jid}")[0] == 200
            st = new.status()
            assert st is not None and st["lease_store"].startswith(f"s3://{bucket}/tqd/prod")
            lease = s3.client.get_object(Bucket=bucket, Key="tqd/prod/leader/lease.json")["Body"].read()
            assert f'"holder":"{new.name}"'.encode() in lease


def test_the_leader_stops_writing_while_the_lease_store_is_gone_and_resumes(tmp_path: Path) -> None:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import boto3
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="gone")
        with Cluster(tmp_path, lease="s3://gone/x", ttl=2.0, env=s3_env(endpoint)).start() as c:
            leader = c.settled()
            before = Api(leader.url).enqueue_ok("q", {"payload": "before"})
            server.stop()
            if server._server is not None:
                server._server.server_close()
            t0 = time.monotonic()
            while Api(leader.url).enqueue("q", {"payload": "during"}).status == 201:
                assert time.monotonic() - t0 < 30, "the leader never stopped taking writes"
                time.sleep(0.05)
            print(f"writes refused {time.monotonic() - t0:.2f} s after the store went away "
                  f"(TTL {c.ttl} s)")
            r = Api(leader.url).enqueue("q", {"payload": "during"})
            assert r.status == 503 and r.json()["error"] == "no_leader", r
            assert get_json(leader.url + "/readyz")[0] == 503
            # reads go on everywhere
            for n in c.nodes:
                assert get_json(f"{n.url}/v1/jobs/{before}")[0] == 200
            # nobody else took over either: nobody can read the lease
            time.sleep(c.ttl)
            assert all((n.status() or {}).get("writable") is False for n in c.nodes)
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()  # (moto keeps its buckets per process)
            back = c.settled()
            after = Api(back.url).enqueue_ok("q", {"payload": "after"})
            for jid in (before, after):
                assert get_json(f"{back.url}/v1/jobs/{jid}")[0] == 200
    finally:
        server.stop()
        if server._server is not None:
            server._server.server_close()


def test_a_store_that_ignores_conditional_writes_is_refused_at_start(tmp_path: Path) -> None:
    with naive_s3() as s3:
        env = {**os.environ, **s3_env(s3.endpoint)}
        r = subprocess.run(
            [sys.executable, "-m", "tqd", "serve", "--port", "0", "--data", str(tmp_path / "d"),
             "--lease-store", "s3://naive/x"], env=env, capture_output=True, timeout=60)
    assert r.returncode == 2, r
    err = r.stderr.decode()
    assert "the lease store cannot hold a lease" in err and "s3://naive/x" in err, err
