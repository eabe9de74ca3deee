"""``taskpilot lifecycle archive|restore|retention``: the conversation data lifecycle jobs.

They run against the conversation service's database, NATS and archive (the same settings,
``TASKPILOT_CONVERSATION_ARCHIVE_URL`` among them). Archive is resumable: kill it and run it
again, it continues the tenant's unfinished job.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime, timedelta

from taskpilot.conversation.adapters import open_event_store
from taskpilot.conversation.domain import conversation_id
from taskpilot.conversation.lifecycle import Lifecycle, open_lifecycle
from taskpilot.conversation.settings import ConversationSettings
from taskpilot.runtime.bootstrap import connect


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def run(
    action: str,
    tenant: str | None,
    lead: str | None,
    conversation: str | None,
    batch: int,
    days_ahead: float,
) -> int:
    settings = ConversationSettings(log_json=False)
    res = await connect(settings, "lifecycle", pool_size=4)
    app = await asyncio.to_thread(
        open_event_store, settings.database_url, settings.event_store_schema
    )
    try:
        lifecycle = await open_lifecycle(
            app, res.pool, res.tenants, res.bus, settings, batch=batch, progress=_progress
        )
        now = datetime.now(UTC) + timedelta(days=days_ahead)
        tenants = [tenant] if tenant else await res.tenants.ids()
        return await _act(lifecycle, action, tenants, lead, conversation, now)
    finally:
        app.close()
        await res.bus.close()
        await res.close()


async def _act(
    lifecycle: Lifecycle,
    action: str,
    tenants: list[str],
    lead: str | None,
    conversation: str | None,
    now: datetime,
) -> int:
    if action == "restore":
        if len(tenants) != 1 or not (lead or conversation):
            _progress("restore needs --tenant and --lead or --conversation")
            return 2
        conv = uuid.UUID(conversation) if conversation else conversation_id(tenants[0], lead or "")
        restored = await lifecycle.restore(tenants[0], conv, "operator")
        print(f"{conv}: {'restored' if restored else 'not archived'}")
        return 0
    for tenant in tenants:
        if action == "archive":
            report = await lifecycle.archive(tenant, now)
            print(
                f"{tenant}: job {report.job_id} archived {report.archived} of "
                f"{report.selected}; skipped {report.skipped or 'none'}"
            )
        else:
            retention = await lifecycle.retention(tenant, now)
            print(
                f"{tenant}: {retention.events} events redacted in {retention.conversations} "
                f"conversations, {retention.archives} archives rewritten"
                if retention.run_id
                else f"{tenant}: no retention rule"
            )
    return 0
