"""The house rules hold in CI, not only by discipline: ruff (style, imports, bugbear,
complexity) on the package, tests and bench; mypy strict on the package; the storage
transactions satisfy the queue core's Protocols; and the layers import only downwards
(import-linter, contracts in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_ruff_is_clean() -> None:
    r = _run("ruff", "check", "tqd", "tests", "bench")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_is_clean() -> None:
    r = _run("mypy")  # files and strictness from pyproject.toml
    assert r.returncode == 0, r.stdout + r.stderr


# The core is typed against tqd.queue.ports and may not import tqd.storage (the layering
# below), so the check that the real transactions fit those Protocols lives here: mypy on a
# file that hands a Tx and a ReadTx to where the Protocols are expected.
_CONFORMANCE = """
from tqd.queue.ports import ReadView, WriteTx
from tqd.storage.store import ReadTx, Tx


def fits(tx: Tx, view: ReadTx) -> None:
    write: WriteTx = tx  # mypy names each member that does not fit
    read: ReadView = view
"""


def test_storage_satisfies_the_core_ports(tmp_path: Path) -> None:
    check = tmp_path / "conformance.py"
    check.write_text(_CONFORMANCE)
    r = _run("mypy", "--strict", str(check))  # run in ROOT: finds tqd and the config there
    assert r.returncode == 0, r.stdout + r.stderr


def test_layers_import_only_downwards() -> None:
    lint_imports = Path(sysconfig.get_path("scripts")) / "lint-imports"  # no `python -m` entry
    r = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
