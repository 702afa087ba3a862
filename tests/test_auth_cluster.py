"""The cluster token: followers replicate with it; no client token (not even admin's) reads
the log; a clustered node with auth but without the cluster token file does not start."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _cluster import Cluster, Node
from test_auth import TokenApi

from tqd.auth import tokens

SECRET = "cluster-secret-0123456789abcdef"


def _settled(c: Cluster, api_of: dict[str, TokenApi], timeout: float = 30.0) -> Node:
    """The leader, once every node is in its in-sync set (asked with a client token)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in c.nodes:
            r = api_of[n.name].request("GET", "/v1/cluster")
            st: Any = r.json() if r.status == 200 else None
            if st and st["role"] == "leader" and st["writable"] and len(st["isr"]) == len(c.nodes):
                return n
        time.sleep(0.05)
    raise AssertionError("the cluster did not settle")


def test_followers_replicate_with_the_cluster_token_and_clients_never_read_the_log(tmp_path: Path) -> None:
    f, secret = tmp_path / "tokens.toml", tmp_path / "cluster.token"
    admin = tokens.create(f, "ops", "admin", ["*"])[0]
    viewer = tokens.create(f, "v", "viewer", ["*"])[0]
    secret.write_text(SECRET + "\n")
    with Cluster(tmp_path, n=2, sync=1,
                 extra=("--auth", str(f), "--cluster-token-file", str(secret))).start() as c:
        apis = {n.name: TokenApi(n.url, admin) for n in c.nodes}
        leader = _settled(c, apis)
        follower = next(n for n in c.nodes if n is not leader)
        # --sync-replicas 1: an answered write is on the follower, shipped with the cluster token
        jid = apis[leader.name].enqueue_ok("q", {"payload": {"n": 1}})
        r = TokenApi(follower.url, viewer).request("GET", f"/v1/jobs/{jid}")
        assert r.status == 200 and r.json()["payload"] == {"n": 1}, r
        log = "/v1/_repl/log?after=0&term=0&node=intruder"
        for path in (log, "/v1/_repl/snapshot?node=intruder"):
            assert apis[leader.name].request("GET", path).status == 403  # admin's token: no
            r = TokenApi(leader.url, None).request("GET", path)
            assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer"), r
            assert TokenApi(leader.url, SECRET + "x").request("GET", path).status == 401
        assert TokenApi(leader.url, SECRET).request("GET", log).status not in (401, 403)
        # the cluster token is no client token
        assert TokenApi(leader.url, SECRET).request("GET", "/v1/queues").status == 403


def test_a_clustered_node_with_auth_needs_the_cluster_token_file(tmp_path: Path) -> None:
    f = tmp_path / "tokens.toml"
    tokens.create(f, "ops", "admin", ["*"])
    r = subprocess.run([sys.executable, "-m", "tqd", "serve", "--port", "0", "--data", str(tmp_path / "d"),
                        "--auth", str(f), "--lease-store", f"file://{tmp_path / 'lease'}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "cluster_token_file is required" in r.stderr, r.stderr
    short = tmp_path / "short"
    short.write_text("abc\n")
    r = subprocess.run([sys.executable, "-m", "tqd", "serve", "--port", "0", "--data", str(tmp_path / "d"),
                        "--cluster-token-file", str(short)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "at least 16 characters" in r.stderr, r.stderr


def test_a_standalone_server_with_auth_and_no_cluster_token_ships_its_log_to_nobody(tmp_path: Path) -> None:
    from conftest import ServerProcess

    f = tmp_path / "tokens.toml"
    admin = tokens.create(f, "ops", "admin", ["*"])[0]
    s = ServerProcess(tmp_path / "data", "--auth", str(f)).start()
    try:
        assert TokenApi(s.url, admin).request("GET", "/v1/_repl/log?after=0&term=0&node=x").status == 403
        assert TokenApi(s.url, None).request("GET", "/v1/_repl/log?after=0&term=0&node=x").status == 401
    finally:
        assert s.stop() == 0
