"""Enqueue the example workload: emails (high priority) and PDF reports, plus the failure cases."""

from __future__ import annotations

import asyncio

from tqd import Client


async def main() -> None:
    async with Client() as tqd:  # TQD_URL, default http://127.0.0.1:7070
        emails = [{"type": "send_email", "payload": {"to": f"user{i}@example.com"},
                   "priority": "high", "key": f"welcome-{i}"} for i in range(50)]
        await tqd.enqueue_many("mail", emails)  # one request; keys make a rerun harmless
        await tqd.enqueue("mail", "send_email", {"to": "ops@flaky.example"}, priority="high")
        await tqd.enqueue("mail", "send_email", {"to": "nobody@invalid"}, priority="high")
        for customer in ("acme", "globex", "initech"):
            await tqd.enqueue("reports", "render_pdf", {"customer": customer, "pages": 30},
                              timeout=3, key=f"report-{customer}-2024-06")
        crm = await tqd.enqueue("reports", "sync_crm", {"customer": "acme"}, max_attempts=2)
        print(f"enqueued; the CRM sync job is {crm.id}")
        for q in await tqd.queues():
            print(f"{q.name:8} queued={q.queued} scheduled={q.scheduled} dead={q.dead}")


if __name__ == "__main__":
    asyncio.run(main())
