"""README.md's code blocks run as pasted, in order, against a fresh `tqd serve`.

Info strings say what a block is for:

- `sh`: run with `bash -e -o pipefail` (a `curl` that does not get a 2xx fails it);
- `python`: run with this Python; `python file=NAME` is saved as NAME (for the
  blocks after it, e.g. `tqd worker tasks:worker`);
- `toml`: a config file for `tqd serve --config` (it must load);
- `sh notest` / `python notest`: meant for a reader, not this test (installing,
  starting the server); `text`: diagrams and sample output.

A block with no info string, or one this test does not know, fails the test, so
a block is skipped only on purpose. Every block runs in one temporary directory,
with `TQD_URL` pointing at the server and this virtualenv's `tqd` and `python`
first on PATH. Afterwards no job may have failed unless the README means it
(its error text appears in the README). The server retries with no backoff, so
a handler that fails for every job (say, on a payload key the producer never
sends) makes its jobs dead within the run instead of keeping `--burst` waiting.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ServerProcess

from tqd import SyncClient, config

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(.*)$")
KNOWN = {"sh", "python", "text", "toml"}


def _curl_fails() -> str:
    """A shell function that makes curl fail on an HTTP error status; the blocks stay as written."""
    try:
        help_all = subprocess.run(["curl", "--help", "all"], capture_output=True, text=True).stdout
    except OSError:
        help_all = ""
    flag = "--fail-with-body" if "--fail-with-body" in help_all else "--fail"  # curl < 7.76: no body
    return f'curl() {{ command curl {flag} "$@"; }}\n'


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    attrs: dict[str, str] = field(default_factory=dict)
    code: str = ""

    def __str__(self) -> str:
        return f"README.md line {self.line} ({self.lang} {' '.join(self.attrs)})"


def blocks(text: str) -> list[Block]:
    out: list[Block] = []
    cur: Block | None = None
    lines: list[str] = []
    for n, ln in enumerate(text.splitlines(), 1):
        m = FENCE.match(ln)
        if cur is None and m:
            lang, *rest = m.group(1).split() or [""]
            attrs = dict((a.split("=", 1) + [""])[:2] for a in rest)
            cur, lines = Block(n, lang, attrs), []
        elif cur is not None and ln.startswith("```"):
            cur.code = "\n".join(lines) + "\n"
            out.append(cur)
            cur = None
        elif cur is not None:
            lines.append(ln)
    assert cur is None, f"README.md: block at line {cur.line} is never closed"
    return out


def test_every_block_is_marked() -> None:
    found = blocks(README.read_text(encoding="utf-8"))
    assert found, "no code blocks found"
    for b in found:
        assert b.lang in KNOWN, f"{b}: mark it sh, python or text (add notest to skip it)"
        assert set(b.attrs) <= {"notest", "file"}, f"{b}: unknown attribute"


def _run(b: Block, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if b.lang == "sh":
        cmd = ["bash", "-e", "-o", "pipefail", "-c", _curl_fails() + b.code]
    else:
        cmd = [sys.executable, "-c", b.code]
    try:  # the timeout only guards against a hang (a worker that never exits)
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{b} did not end:\n{b.code}\n--- stderr\n{e.stderr!r}")


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's shell blocks use curl")
def test_readme_blocks_run_as_pasted(server_factory: type[ServerProcess], tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    (tmp_path / "run").mkdir()
    server = server_factory(tmp_path / "data", "--backoff-base-s", "0").start()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "TQD_URL": server.url, "PATH": bin_dir + os.pathsep + os.environ["PATH"],
           "COLUMNS": "120"}
    env.pop("TQD_TOKEN", None)
    ran = 0
    for b in blocks(text):
        if b.lang == "text" or "notest" in b.attrs:
            continue
        if b.lang == "toml":
            (tmp_path / "run" / "tqd.toml").write_text(b.code, encoding="utf-8")
            config.load({}, env={}, config_file=str(tmp_path / "run" / "tqd.toml"))
            continue
        if "file" in b.attrs:
            (tmp_path / "run" / b.attrs["file"]).write_text(b.code, encoding="utf-8")
            continue
        r = _run(b, tmp_path / "run", env)
        assert r.returncode == 0, f"{b} failed ({r.returncode}):\n{b.code}\n--- stdout\n{r.stdout}" \
                                  f"\n--- stderr\n{r.stderr}"
        ran += 1
    assert ran >= 4

    with SyncClient(server.url) as c:
        stats = c.queues()
        assert sum(s.completed_total for s in stats) > 0, "no job was worked"
        for s in stats:
            for job in c.jobs(s.name):
                # Only failures the README means: their error text is in it ("SMTP 451").
                unmeant = [e.error for e in job.errors if e.error not in text]
                assert not unmeant, f"job {job.id} ({job.type} in {s.name}) failed: {job.errors[-1]}"
    assert server.stop() == 0, server.log.decode(errors="replace")


def test_configuration_table_lists_every_setting() -> None:
    """Every flag of `tqd serve` has its row, with its env var and its default."""

    text = README.read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(--[a-z-]+)` \|.*$", text, re.M)}
    for f in config.settings_fields():
        row = rows.get(config.flag_name(f))
        assert row is not None, f"README's Configuration table has no row for {config.flag_name(f)}"
        assert f"`{config.env_name(f)}`" in row, row
        default = f.default if not isinstance(f.default, float) else f"{f.default:g}"
        assert f"| {default} |" in row, (row, default)
