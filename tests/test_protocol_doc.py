"""docs/protocol.md stays true to the server.

- Routes: every route of `tqd.http.app.ROUTES` has its heading (`### POST /v1/lease`), and
  every `METHOD /path` the doc names, anywhere, is a route (no stale or invented ones;
  a placeholder may be spelled `{q}` or `{queue}`).
- Errors: the error table has a row `| `code` | status |` for every code of
  `tqd.errors.BY_CODE` with its status, and for every other status the server gives a
  code with (`SomeError(...).with_status(414)` in tqd/), and no other rows.
- Transcripts: the `sh` blocks run as pasted, in order, against a fresh `tqd serve`,
  like README's (tests/test_readme.py): `bash -e -o pipefail`, each `curl` must get a
  2xx; `sh notest` blocks (error examples) and `text` blocks are skipped. The blocks
  share one shell's state, as a reader pasting them into one terminal does: the
  variables and functions a block leaves are there for the next.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ServerProcess
from test_readme import Block, _curl_fails, blocks

import tqd
from tqd import errors
from tqd.http.app import ROUTES

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "protocol.md"
METHODS = "GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS"
MENTION = re.compile(rf"(?<![\w/-])({METHODS}) (/[A-Za-z0-9_.:/{{}}-]*)")
HEADING = re.compile(rf"^#{{2,4}} ({METHODS}) (/\S*)\s*$", re.M)
ERROR_ROW = re.compile(r"^\| `([a-z_]+)` \| (\d{3}) \|", re.M)


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _shape(path: str) -> str:
    """A path with its placeholders made alike: /v1/jobs/{id} and /v1/jobs/{job} match."""
    return re.sub(r"\{[^}/]*\}", "{}", path.rstrip("/") or "/")


def route_problems(text: str) -> list[str]:
    problems = []
    headings = set(HEADING.findall(text))
    for r in ROUTES:
        if (r.method, r.path) not in headings:
            problems.append(f"no heading `### {r.method} {r.path}` for a route of ROUTES")
    known = {(r.method, _shape(r.path)) for r in ROUTES}
    for n, line in enumerate(text.splitlines(), 1):
        for method, path in MENTION.findall(line):
            if (method, _shape(path)) not in known:
                problems.append(f"line {n}: `{method} {path}` is not a route of tqd.http.app.ROUTES")
    return problems


def test_every_route_is_documented_and_no_other() -> None:
    problems = route_problems(_doc())
    assert not problems, "docs/protocol.md:\n" + "\n".join(problems)


def given_errors() -> set[tuple[str, int]]:
    """(code, status) of every error the server can give: each code of BY_CODE with its own
    status, and the statuses tqd/ gives a code with by `Error(...).with_status(<int>)`."""
    pairs = {(code, cls.http_status) for code, cls in errors.BY_CODE.items()}
    by_name = {cls.__name__: cls for cls in errors.BY_CODE.values()}
    for src in Path(tqd.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(src.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "with_status" and node.args):
                continue
            made, status = node.func.value, node.args[0]
            if (isinstance(made, ast.Call) and isinstance(made.func, ast.Name)
                    and made.func.id in by_name and isinstance(status, ast.Constant)
                    and isinstance(status.value, int)):
                pairs.add((by_name[made.func.id].code, status.value))
    return pairs


def error_problems(text: str) -> list[str]:
    rows = {(code, int(status)) for code, status in ERROR_ROW.findall(text)}
    given = given_errors()
    problems = [f"no row `| `{c}` | {s} |` in the error table" for c, s in sorted(given - rows)]
    problems += [f"row `| `{c}` | {s} |`: the server gives no such error" for c, s in sorted(rows - given)]
    return problems


def test_error_table_has_every_code_with_its_status() -> None:
    given = given_errors()
    assert ("too_many_connections", 503) in given and ("invalid_request", 414) in given, given
    problems = error_problems(_doc())
    assert not problems, "docs/protocol.md:\n" + "\n".join(problems)


# ---- transcripts ---------------------------------------------------------------------

_KEEP_STATE = """
__tqd_state() {  # the variables and functions this shell has beyond a fresh one's
  local v
  for v in $(compgen -v); do
    case "$v" in __*|_|BASH*|FUNCNAME|PIPESTATUS|LINENO|RANDOM|SECONDS|SRANDOM|EPOCH*|SHLVL|OLDPWD|PWD) continue;; esac
    grep -qx "$v" <<<"$__tqd_base" || declare -p "$v" 2>/dev/null || true
  done
  declare -f | grep -v '^declare' || true
}
"""


def _script(code: str, state: Path) -> str:
    """A block as bash runs it: curl failing on an error status, the state the blocks
    before it left loaded first, and its own state saved after it."""
    return (f"__tqd_base=$(compgen -v)\n{_curl_fails()}{_KEEP_STATE}"
            f"if [ -f {state} ]; then . {state}; fi\n"
            f"{code}\n"
            f"__tqd_state > {state}.new && mv {state}.new {state}\n")


def sh_blocks(text: str) -> list[Block]:
    found = blocks(text)
    for b in found:
        assert b.lang in {"sh", "text"}, f"docs/protocol.md line {b.line}: mark it sh or text"
        assert set(b.attrs) <= {"notest"}, f"docs/protocol.md line {b.line}: unknown attribute"
    return [b for b in found if b.lang == "sh" and "notest" not in b.attrs]


def run_blocks(text: str, url: str, cwd: Path) -> None:
    env = {**os.environ, "TQD_URL": url,
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    env.pop("TQD_TOKEN", None)
    state = cwd / "shell-state.sh"
    todo = sh_blocks(text)
    assert len(todo) >= 10, "docs/protocol.md has too few runnable transcripts"
    assert todo[0].code.startswith("U=${TQD_URL:-http://127.0.0.1:7070}\n"), \
        "the first sh block sets U=${TQD_URL:-http://127.0.0.1:7070}"
    for b in todo:
        try:
            r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", _script(b.code, state)],
                               cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"docs/protocol.md line {b.line}: the block did not end:\n{b.code}"
                        f"--- stderr\n{e.stderr!r}")
        assert r.returncode == 0, (f"docs/protocol.md line {b.line}: the block failed "
                                   f"({r.returncode}):\n{b.code}--- stdout\n{r.stdout}\n"
                                   f"--- stderr\n{r.stderr}")


@pytest.mark.skipif(shutil.which("curl") is None, reason="the doc's transcripts use curl")
def test_transcripts_run_as_pasted(server_factory: type[ServerProcess], tmp_path: Path) -> None:
    server = server_factory(tmp_path / "data").start()
    (tmp_path / "run").mkdir()
    run_blocks(_doc(), server.url, tmp_path / "run")
    assert server.stop() == 0, server.log.decode(errors="replace")
