"""`tqd top` against the real server: the queues' depth, rates from the stored totals'
change between readings, and the node."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from _http import Api
from conftest import ServerProcess


def test_top_shows_depth_rates_and_the_node(server: ServerProcess) -> None:
    api = Api(server.url)
    for _ in range(3):
        api.enqueue_ok("mail", {})
    env = {**os.environ, "TQD_URL": server.url, "COLUMNS": "200"}
    top = subprocess.Popen([sys.executable, "-m", "tqd", "top", "--iterations", "3", "--interval", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert top.stdout is not None
    first = top.stdout.readline()  # the first reading has begun: enqueue before the second
    while "mail" not in first:
        first = top.stdout.readline()
    for _ in range(20):
        api.enqueue_ok("mail", {})
    out, err = top.communicate(timeout=60)
    assert top.returncode == 0, err
    rows = [ln for ln in (first + out).splitlines() if "mail" in ln]
    assert len(rows) == 3, rows  # one per reading
    cells = [[c.strip() for c in re.split(r"[│|]", r) if c.strip()] for r in rows]
    # queue, queued, scheduled, active, dead, enq/s, done/s, fail/s, oldest
    assert cells[0][1] == "3" and cells[0][5] == "–"  # the first reading has no rate yet
    assert 3 <= int(cells[-1][1]) <= 23
    assert any(float(c[5].replace(",", "")) > 0 for c in cells[1:]), cells  # 20 enqueued meanwhile
    assert "standalone" in out
