"""Show the dead jobs of the example queues and put them back (after fixing the cause)."""

from __future__ import annotations

from tqd import SyncClient

with SyncClient() as tqd:
    for queue in ("mail", "reports"):
        for job in tqd.jobs(queue, state="dead"):
            print(f"{queue}: {job.id} {job.type} dead after {job.attempt} tries: {job.errors[-1].error}")
        print(f"{queue}: redrove {tqd.redrive(queue)} job(s)")
