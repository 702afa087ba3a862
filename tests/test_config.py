"""Settings from a TOML config file, TQD_* variables and flags, in that order of strength."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _http import Api
from conftest import ServerProcess

from tqd import config


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "tqd.toml"
    f.write_text('lease_timeout_s = 30\nmax-attempts = 4\nmax_bulk_lines = 1_000\n'
                 'data = "/srv/q"\nretention_s = 5\n')
    s = config.load({"retention_s": "7"}, env={"TQD_MAX_ATTEMPTS": "6"}, config_file=str(f))
    assert (s.lease_timeout_s, s.max_attempts, s.max_bulk_lines, s.data_dir, s.retention_s) == (
        30.0, 6, 1000, Path("/srv/q"), 7.0)
    s = config.load({}, env={"TQD_CONFIG": str(f)})  # the file named by the environment
    assert s.max_attempts == 4


@pytest.mark.parametrize("text,message", [
    ("lease_timout_s = 3\n", "unknown setting 'lease_timout_s'"),
    ("port = \"http\"\n", "port: expected int, got 'http'"),
    ("port = 70000\n", "port must be 0..65535"),
    ("port = \n", "tqd.toml"),  # not TOML: the parser's message, with the file
])
def test_bad_files_are_refused_with_the_setting_named(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "tqd.toml"
    f.write_text(text)
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        config.load({}, env={}, config_file=str(f))


def test_flag_values_are_checked_by_type() -> None:
    with pytest.raises(ValueError, match="lease_timeout_s: expected float, got 'soon'"):
        config.load({"lease_timeout_s": "soon"}, env={})


def test_serve_reads_the_config_file(server_factory: type[ServerProcess], tmp_path: Path) -> None:
    f = tmp_path / "tqd.toml"
    f.write_text("max_attempts = 2\nlease_timeout_s = 45\n")
    s = server_factory(tmp_path / "data", "--config", str(f)).start()
    api = Api(s.url)
    job = api.job(api.enqueue_ok("q", {}))
    assert (job["max_attempts"], job["timeout"]) == (2, 45.0)
    assert s.stop() == 0


def test_serve_refuses_a_bad_config_file(tmp_path: Path) -> None:
    f = tmp_path / "tqd.toml"
    f.write_text("nonsense = 1\n")
    r = subprocess.run([sys.executable, "-m", "tqd", "serve", "--config", str(f), "--data",
                        str(tmp_path / "d"), "--port", "0"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "unknown setting 'nonsense'" in r.stderr, r.stderr
