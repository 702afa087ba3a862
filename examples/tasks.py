"""The worker for the example workload: transactional emails and PDF reports.

Run it with `tqd worker tasks:worker` (from this directory) or `python tasks.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random

from tqd import Fatal, JobContext, Retry, Worker

# Queues are tried in this order: a free slot always takes an email before a report.
worker = Worker(queues=["mail", "reports"], concurrency=8, grace_s=30)


@worker.task("send_email")
async def send_email(job: JobContext) -> dict[str, str]:
    """Short I/O job. Addresses at flaky.example fail twice (a busy SMTP server), then go through."""
    to = job.payload["to"]
    if to.endswith("@flaky.example") and job.attempt < 3:
        raise Retry(in_=1, reason=f"SMTP 451 try again later (attempt {job.attempt})")
    if to.endswith("@invalid"):
        raise Fatal(f"no such domain for {to}")  # retrying cannot help: dead at once
    await asyncio.sleep(random.uniform(0.02, 0.1))  # the SMTP round trip
    return {"message_id": f"<{job.id}@example.com>"}


@worker.task("render_pdf")
def render_pdf(job: JobContext) -> dict[str, object]:
    """Long CPU job in a thread: reports progress, heartbeats keep its lease, stops if cancelled."""
    pages = int(job.payload.get("pages", 20))
    digest = hashlib.sha256()
    block = bytes(64 * 1024)
    for page in range(1, pages + 1):
        job.check()  # raises JobCancelled if the job was cancelled or its lease lost
        for _ in range(2000):  # "render" one page: ~0.1-0.3 s of CPU
            digest.update(block)
        job.progress({"page": page, "of": pages})
    return {"pages": pages, "sha256": digest.hexdigest()[:16]}


@worker.task("sync_crm")
async def sync_crm(job: JobContext) -> str:
    """Fails while the CRM is "down" (CRM_ONLINE unset): ends dead, to be redriven later."""
    if not os.environ.get("CRM_ONLINE"):
        raise ConnectionError("CRM at crm.example is unreachable")
    return f"customer {job.payload['customer']} synced"


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    worker.run_forever()
