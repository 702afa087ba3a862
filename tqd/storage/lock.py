"""The data dir's lock: one tqd per data dir, held for the life of the process.

``flock`` on ``DIR/LOCK``, with the holder's pid written in it for the error message. The
forked writer process inherits the lock, so a server killed with SIGKILL keeps it until its
writer has finished its last commit and gone; a new tqd waits briefly for that.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


class DataDirLocked(Exception):
    pass


def _alive(pid: str) -> bool:
    """Whether a process runs with this pid (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def lock_data_dir(path: Path, wait_s: float = 10.0) -> int:
    """Hold an exclusive lock on the data dir for the life of the process."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            # the tqd that wrote its pid is gone but the lock is held: its writer process is
            # finishing its last commit and lets go within moments
            if not _alive(holder) and time.monotonic() < deadline:
                time.sleep(0.02)
                continue
        os.close(fd)
        raise DataDirLocked(
            f"data dir {path} is in use by another tqd (pid {holder}); "
            "stop it or choose another --data"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
