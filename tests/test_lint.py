"""The house rules hold in CI, not only by discipline: ruff (style, imports, bugbear,
complexity) on the package, tests and bench, and mypy strict on the package."""

from __future__ import annotations

import subprocess
import sys
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
