"""TLS end to end: the real `tqd serve` with certificates made at test time (trustme).

HTTPS with a verifying client, refusals (no CA, plain http, no client certificate under
mutual TLS), a bad certificate at start, and a three-node cluster whose nodes talk to
each other over mutual TLS.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trustme
from _cluster import Cluster, Node
from conftest import ServerProcess

from tqd.client.api import Client, ConnectionFailed, SyncClient
from tqd.cluster.node import node_tls
from tqd.config import Settings


class Pki:
    """One CA; a server certificate for 127.0.0.1 (trustme's are good for client auth too,
    so the nodes of a cluster use it both ways) and a client certificate, as PEM files."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        client = self.ca.issue_cert("worker@example.com")
        self.ca_file = str(root / "ca.pem")
        self.cert = str(root / "server.pem")
        self.key = str(root / "server.key")
        self.client = str(root / "client.pem")  # certificate and key in one file
        self.ca.cert_pem.write_to_path(self.ca_file)
        server.cert_chain_pems[0].write_to_path(self.cert)
        for pem in server.cert_chain_pems[1:]:
            pem.write_to_path(self.cert, append=True)
        server.private_key_pem.write_to_path(self.key)
        client.private_key_and_cert_chain_pem.write_to_path(self.client)

    def serve_args(self, mutual: bool = False) -> tuple[str, ...]:
        args = ("--tls-cert", self.cert, "--tls-key", self.key)
        return (*args, "--tls-client-ca", self.ca_file) if mutual else args

    def client_ctx(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.load_cert_chain(self.client)
        return ctx


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


def _serve(factory: type[ServerProcess], tmp_path: Path, *args: str) -> ServerProcess:
    s = factory(tmp_path / "data", *args).start()
    assert s.url.startswith("https://127.0.0.1:"), s.log
    return s


async def test_https_with_the_ca_enqueues_and_reads(server_factory: type[ServerProcess],
                                                    tmp_path: Path, pki: Pki) -> None:
    s = _serve(server_factory, tmp_path, *pki.serve_args())
    async with Client(s.url, ca_file=pki.ca_file) as c:
        r = await c.enqueue("q", "t", {"n": 1})
        job = await c.get(r.id)
        assert job.payload == {"n": 1} and job.state == "queued"
        assert (await c.queue("q")).queued == 1
    assert s.stop() == 0 and b"Traceback" not in s.log, s.log


async def test_https_without_the_ca_fails_on_the_certificate(server_factory: type[ServerProcess],
                                                             tmp_path: Path, pki: Pki,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQD_CA_FILE", raising=False)
    s = _serve(server_factory, tmp_path, *pki.serve_args())
    async with Client(s.url, retries=0) as c:  # the system CAs: they did not sign it
        with pytest.raises(ConnectionFailed, match="certificate cannot be verified") as e:
            await c.enqueue("q", "t", {"n": 1})
    assert isinstance(e.value.__cause__.certificate_error, ssl.SSLCertVerificationError)  # type: ignore[union-attr]
    # nothing got in: the server has no job
    async with Client(s.url, ca_file=pki.ca_file) as c:
        assert (await c.queue("q")).queued == 0
    # TQD_CA_FILE is the same as ca_file
    monkeypatch.setenv("TQD_CA_FILE", pki.ca_file)
    async with Client(s.url) as c:
        await c.enqueue("q", "t", {"n": 2})


def test_plain_http_to_the_tls_port_gets_nothing(server_factory: type[ServerProcess],
                                                 tmp_path: Path, pki: Pki) -> None:
    s = _serve(server_factory, tmp_path, *pki.serve_args(), "--header-timeout-s", "0.5")
    # a connection that never starts its handshake is closed after the header timeout
    host, port = s.url.removeprefix("https://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as silent:
        t0 = time.monotonic()
        assert silent.recv(100) == b""
        assert time.monotonic() - t0 < 3.0
    with SyncClient(s.url.replace("https://", "http://"), retries=0, connect_retries=0) as c:
        with pytest.raises(ConnectionFailed):
            c.enqueue("q", "t", {"n": 1})
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(s.url.replace("https://", "http://") + "/healthz", timeout=5)
    with SyncClient(s.url, ca_file=pki.ca_file) as c:
        assert c.queue("q").queued == 0


def _handshake_then_get(url: str, ctx: ssl.SSLContext) -> bytes:
    """A TLS connection to url, a GET /healthz and what comes back: b"" if the server
    closed it. (Under TLS 1.3 the server refuses a missing client certificate after the
    client's side of the handshake is done: the client learns it on its first read.)"""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        try:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return tls.recv(65536)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return b""


def test_mutual_tls_needs_a_client_certificate(server_factory: type[ServerProcess],
                                               tmp_path: Path, pki: Pki) -> None:
    s = _serve(server_factory, tmp_path, *pki.serve_args(mutual=True))
    no_cert = ssl.create_default_context(cafile=pki.ca_file)
    assert _handshake_then_get(s.url, no_cert) == b""
    tls12 = ssl.create_default_context(cafile=pki.ca_file)  # where the handshake itself fails
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _handshake_then_get(s.url, tls12)
    # a certificate from another CA is no better
    stranger = trustme.CA().issue_cert("mallory@example.com")
    other = ssl.create_default_context(cafile=pki.ca_file)
    stranger.configure_cert(other)
    assert _handshake_then_get(s.url, other) == b""
    with SyncClient(s.url, ca_file=pki.ca_file, retries=0) as c:
        with pytest.raises(ConnectionFailed):
            c.enqueue("q", "t", {"n": 1})

    assert _handshake_then_get(s.url, pki.client_ctx()).startswith(b"HTTP/1.1 200")
    with SyncClient(s.url, ca_file=pki.ca_file, cert_file=pki.client) as c:
        jid = c.enqueue("q", "t", {"n": 1}).id
        assert c.get(jid).payload == {"n": 1}


def test_a_bad_certificate_is_exit_2_with_the_reason(tmp_path: Path, pki: Pki) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    other_key = tmp_path / "other.key"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other_key))
    cases = [
        (("--tls-cert", str(junk), "--tls-key", pki.key), "tls_cert"),
        (("--tls-cert", pki.cert, "--tls-key", str(other_key)), "is not the private key of tls_cert"),
        (("--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", pki.key), "no such file"),
        ((*pki.serve_args(), "--tls-client-ca", str(junk)), "tls_client_ca"),
        (("--tls-cert", pki.cert), "tls_cert and tls_key go together"),
    ]
    for args, why in cases:
        r = subprocess.run([sys.executable, "-m", "tqd", "serve", "--port", "0", "--data",
                            str(tmp_path / "data"), *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (args, r.stderr)
        assert "tqd: bad setting:" in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert re.search(why, r.stderr, re.I), (args, r.stderr)


# ---- a cluster over mutual TLS ------------------------------------------------------


class _TlsNode(Node):
    """A cluster node at https://127.0.0.1:PORT (its --advertise, or without one its
    default), asked for its status over mutual TLS."""

    ctx: ssl.SSLContext

    def __init__(self, name: str, data: Path, lease: str, ttl: float, extra: tuple[str, ...],
                 advertise: bool) -> None:
        super().__init__(name, data, lease, ttl, extra, None)
        plain, self.url = self.url, f"https://127.0.0.1:{self.port}"
        args = list(self.args)
        i = args.index(plain)
        args[i - 1:i + 1] = ["--advertise", self.url] if advertise else []
        self.args = tuple(args)
        self.proc = ServerProcess(data, *self.args)

    def status(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.url + "/v1/cluster", timeout=2.0, context=self.ctx) as r:
                return json.loads(r.read()) if r.status == 200 else None
        except (OSError, urllib.error.HTTPError):
            return None


class _TlsCluster(Cluster):
    def __init__(self, root: Path, pki: Pki, n: int = 3) -> None:
        super().__init__(root, n=n, sync=1)
        self.nodes = [_TlsNode(f"n{i + 1}", root / f"n{i + 1}", self.lease, self.ttl,
                               ("--sync-replicas", "1", *pki.serve_args(mutual=True)),
                               advertise=i < n - 1)  # the last one: https by default
                      for i in range(n)]
        for node in self.nodes:
            node.ctx = pki.client_ctx()


def test_a_node_verifies_the_leader_with_the_cluster_ca(tmp_path: Path, pki: Pki) -> None:
    ctx = node_tls(Settings(data_dir=tmp_path, tls_cert=pki.cert, tls_key=pki.key,
                            tls_client_ca=pki.ca_file))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [c["subject"] for c in
                                                          pki.client_ctx().get_ca_certs()]
    # without --tls-client-ca: the system CAs, still verified
    plain = node_tls(Settings(data_dir=tmp_path, tls_cert=pki.cert, tls_key=pki.key))
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname


def test_a_cluster_over_mutual_tls_replicates_and_fails_over(tmp_path: Path, pki: Pki) -> None:
    with _TlsCluster(tmp_path, pki).start() as c:
        leader = c.settled()
        st = leader.status()
        assert st is not None and sorted(st["isr"]) == ["n1", "n2", "n3"], st  # followers got in
        for n in c.nodes:
            assert (n.status() or {}).get("url") == n.url, n.status()
        followers = [n for n in c.nodes if n is not leader]
        tls = {"ca_file": pki.ca_file, "cert_file": pki.client}
        # a write given to a follower is redirected to the leader's https URL
        with SyncClient(followers[0].url, **tls) as cl:
            jid = cl.enqueue("q", "t", {"n": 1}).id
            assert cl._client.leader == leader.url
        for f in followers:  # --sync-replicas 1: on every member of the in-sync set
            with SyncClient(f.url, **tls) as cl:
                assert cl.get(jid).payload == {"n": 1}, f.name

        leader.kill()
        new = c.leader(exclude=leader)
        assert new in followers
        with SyncClient(c.urls, **tls) as cl:
            jid2 = cl.enqueue("q", "t", {"n": 2}).id
        other = next(n for n in followers if n is not new)
        with SyncClient(other.url, **tls) as cl:
            assert cl.get(jid).payload == {"n": 1} and cl.get(jid2).payload == {"n": 2}
