"""Encryption at rest (--encryption-key-file): against the real `tqd serve`.

No payload, result, progress or error detail is on disk in plaintext (every file under
the data dir is searched; the same run without a key file finds them all, so the search
works, and that store then switched to encryption reads them); everything reads back after a restart and after `tqd keys rotate` + restart, with
new values sealed with the new key; a bad key file stops the start (exit 2), a value that
the keys at hand cannot open is a 500 for that request, not a crash; a follower applies
and reads encrypted values. The value codec's property: it round-trips, and refuses a
flipped bit or a value moved to another key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import hypothesis.strategies as st
import pytest
from _cluster import Cluster, get_json
from _http import Api
from conftest import ServerProcess
from hypothesis import given, settings

from tqd.storage import crypt
from tqd.storage.log import EXTRA, SPEC
from tqd.storage.store import Store

PAYLOAD, RESULT = "zebra-payload-7f3a91c2", "quokka-result-52be0d11"
PROGRESS, DETAILS, ERROR = "narwhal-progress-9c4e7a03", "axolotl-details-e18f6b44", "okapi-err-3d2c"
MARKERS = [m.encode() for m in (PAYLOAD, RESULT, PROGRESS, DETAILS, ERROR)]
MAP = 1 << 26


def keys(cmd: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tqd", "keys", cmd, "--file", str(path)],
                          capture_output=True, text=True, timeout=30)


def on_disk(data: Path) -> set[bytes]:
    """The markers found in any file under the data dir."""
    found = set()
    for f in data.rglob("*"):
        if f.is_file():
            blob = f.read_bytes()
            found |= {m for m in MARKERS if m in blob}
    return found


def fill(api: Api) -> tuple[str, str]:
    """A done job (payload, progress, result) and a dead one (payload, error, details)."""
    done = api.enqueue_ok("q", {"payload": {"m": PAYLOAD}})
    job = api.lease_one("q")
    assert api.heartbeat(done, job["lease"], extend=30, progress={"m": PROGRESS}).status == 200
    assert api.ack(done, job["lease"], result={"m": RESULT}).status == 200
    dead = api.enqueue_ok("q", {"payload": [PAYLOAD], "max_attempts": 1})
    job = api.lease_one("q")
    assert api.fail(dead, job["lease"], error=ERROR, details=DETAILS).status == 200
    return done, dead


def check(api: Api, done: str, dead: str) -> None:
    j = api.job(done)
    assert (j["payload"], j["progress"], j["result"]) == ({"m": PAYLOAD}, {"m": PROGRESS}, {"m": RESULT})
    j = api.job(dead)
    assert j["state"] == "dead" and j["payload"] == [PAYLOAD]
    assert [(e["error"], e["details"]) for e in j["errors"]] == [(ERROR, DETAILS)]


def key_ids(data: Path, keyfile: Path, *jids: str) -> list[int | None]:
    """The key id each job's spec is sealed with (the server stopped)."""
    kr = crypt.load(str(keyfile))
    store = Store(data, MAP, keys=kr)
    try:
        with store.env.begin() as t:
            return [crypt.Keyring.key_id(t.get(j.encode(), db=store.dbs["spec"])) for j in jids]
    finally:
        store.close()


@pytest.mark.parametrize("encrypted", [True, False])
def test_no_plaintext_on_disk_and_reads_back_after_restart_and_rotation(
        server_factory: type[ServerProcess], tmp_path: Path, encrypted: bool) -> None:
    data, kf = tmp_path / "data", tmp_path / "keys.json"
    args: tuple[str, ...] = ()
    if encrypted:
        assert keys("create", kf).returncode == 0
        assert kf.stat().st_mode & 0o777 == 0o600
        args = ("--encryption-key-file", str(kf))
    s = server_factory(data, *args).start()
    done, dead = fill(Api(s.url))
    assert s.stop() == 0
    if not encrypted:  # the search finds them when they are there
        assert on_disk(data) == set(MARKERS)
        # and a plaintext store can be switched to encryption: old values read as they are
        assert keys("create", kf).returncode == 0
        s = server_factory(data, "--encryption-key-file", str(kf)).start()
        check(Api(s.url), done, dead)
        new = Api(s.url).enqueue_ok("q", {"payload": 1})
        assert s.stop() == 0
        assert key_ids(data, kf, done, dead, new) == [None, None, 1]
        return
    assert on_disk(data) == set(), "plaintext job data on disk"

    s = server_factory(data, *args).start()  # a restart reads everything back
    check(Api(s.url), done, dead)
    assert s.stop() == 0

    r = keys("rotate", kf)
    assert r.returncode == 0, r.stderr
    listed = subprocess.run([sys.executable, "-m", "tqd", "keys", "list", "--file", str(kf), "--json"],
                            capture_output=True, text=True, timeout=30).stdout.splitlines()
    assert [(x["id"], x["write"]) for x in map(json.loads, listed)] == [(1, False), (2, True)]
    s = server_factory(data, *args).start()
    api = Api(s.url)
    check(api, done, dead)  # old values: key 1, still read
    new = api.enqueue_ok("q", {"payload": {"m": PAYLOAD}})
    assert api.job(new)["payload"] == {"m": PAYLOAD}
    assert s.stop() == 0
    assert b"Traceback" not in s.log, s.log.decode(errors="replace")
    assert key_ids(data, kf, done, dead, new) == [1, 1, 2]  # new writes use the newest key
    assert on_disk(data) == set()


def test_bad_key_file_refuses_to_start(tmp_path: Path) -> None:
    good, loose, junk = tmp_path / "k.json", tmp_path / "loose.json", tmp_path / "junk.json"
    assert keys("create", good).returncode == 0
    assert keys("create", good).returncode == 1  # never replaced
    shutil.copy(good, loose)
    os.chmod(loose, 0o644)
    junk.write_text('{"keys": [{"id": 1, "key": "c2hvcnQ="}]}')
    os.chmod(junk, 0o600)
    for f, why in ((tmp_path / "none.json", "No such file"), (loose, "readable by others"),
                   (junk, "5 bytes, not 32")):
        r = subprocess.run([sys.executable, "-m", "tqd", "serve", "--port", "0", "--data",
                            str(tmp_path / "d"), "--encryption-key-file", str(f)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and why in r.stderr, (f, r.returncode, r.stderr)


def test_a_value_the_keys_cannot_open_is_a_500_not_a_crash(
        server_factory: type[ServerProcess], tmp_path: Path) -> None:
    data, kf, old = tmp_path / "data", tmp_path / "keys.json", tmp_path / "old.json"
    assert keys("create", kf).returncode == 0
    shutil.copy(kf, old)  # key 1 only
    assert keys("rotate", kf).returncode == 0
    s = server_factory(data, "--encryption-key-file", str(kf)).start()
    jid = Api(s.url).enqueue_ok("q", {"payload": {"m": PAYLOAD}})  # sealed with key 2
    assert s.stop() == 0

    s = server_factory(data, "--encryption-key-file", str(old)).start()
    api = Api(s.url)
    r = api.request("GET", f"/v1/jobs/{jid}")
    assert r.status == 500 and r.json()["error"] == "internal" and "key id 2" in r.json()["message"], r
    assert api.lease(["q"]).status == 500  # the writer process refuses it too, and goes on
    other = api.enqueue_ok("other", {"payload": 1})  # everything else works
    assert api.lease_one("other")["id"] == other
    assert get_json(s.url + "/healthz")[0] == 200
    assert s.stop() == 0
    assert f"cannot decrypt the stored value of job {jid}, spec:".encode() in s.log and b"key id 2" in s.log


def test_follower_replicates_and_reads_encrypted_values(tmp_path: Path) -> None:
    kf = tmp_path / "keys.json"
    assert keys("create", kf).returncode == 0
    with Cluster(tmp_path, n=2, extra=("--encryption-key-file", str(kf))).start() as c:
        leader = c.settled()
        follower = next(n for n in c.nodes if n is not leader)
        jid = Api(leader.url).enqueue_ok("q", {"payload": {"m": PAYLOAD}})
        code, job = get_json(f"{follower.url}/v1/jobs/{jid}")
        assert code == 200 and job["payload"] == {"m": PAYLOAD}, (code, job)
        for n in c.nodes:
            assert n.stop() == 0
        for n in c.nodes:
            assert on_disk(n.proc.data_dir) == set(), n.name


# ---- the value codec ----------------------------------------------------------------------

_KR = crypt.Keyring({1: b"\x01" * 32, 2: b"\x02" * 32})
_KR1 = crypt.Keyring({1: b"\x01" * 32})
_keys_st = st.binary(min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(code=st.sampled_from([SPEC, EXTRA]), key=_keys_st, value=st.binary(max_size=200),
       flip=st.integers(min_value=0), other=_keys_st)
def test_codec_round_trips_and_refuses_tampering(code: int, key: bytes, value: bytes,
                                                 flip: int, other: bytes) -> None:
    sealed = _KR.seal(code, key, value)
    assert len(sealed) == len(value) + crypt.OVERHEAD and crypt.Keyring.key_id(sealed) == 2
    assert _KR.open(code, key, sealed) == value
    with pytest.raises(crypt.Undecryptable, match="key id 2"):
        _KR1.open(code, key, sealed)  # a key the file no longer holds
    bit = flip % (len(sealed) * 8)
    bad = bytearray(sealed)
    bad[bit // 8] ^= 1 << (bit % 8)
    if bit < 8:  # the magic byte: read as a plaintext value of before encryption (as stored)
        assert _KR.open(code, key, bytes(bad)) == bytes(bad) != value
    else:
        with pytest.raises(crypt.Undecryptable):
            _KR.open(code, key, bytes(bad))
    if other != key:
        with pytest.raises(crypt.Undecryptable):
            _KR.open(code, other, sealed)  # moved to another job
    with pytest.raises(crypt.Undecryptable):
        _KR.open(SPEC + EXTRA - code, key, sealed)  # moved to another sub-database
    if value[:1] != b"\xc1":  # (no plaintext value starts so)
        assert _KR.open(code, key, value) == value  # a value of before encryption: as it is
