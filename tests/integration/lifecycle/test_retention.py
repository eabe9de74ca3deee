"""Retention: content older than the tenant's limit is gone from the hot store, the archive
and analytics' read models; the facts (types, versions, times, tiers) and every analytics total
remain; each run is recorded and announced."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from taskpilot.contracts import subjects
from taskpilot.contracts.conversation import TENANT_LEAD
from taskpilot.conversation.domain import conversation_id
from taskpilot.conversation.gdpr import stored_count
from taskpilot.conversation.redaction import REDACTED
from taskpilot.tenancy import tenant_transaction
from tests.integration.lifecycle.analytics import Analytics
from tests.integration.lifecycle.conftest import World, add_tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")


def facts(history: list[dict]) -> list[tuple]:
    return [(e["version"], e["type"], e["at"]) for e in history]


async def test_content_past_the_limit_is_redacted_everywhere_and_the_metrics_remain(
    world: World, analytics: Analytics
) -> None:
    tenant = "lr" + uuid.uuid4().hex[:6]
    await add_tenant(world.tenants, tenant, message_content_days=30, archive_after_days=60)
    hot, archived = world.seed(tenant, 3), world.seed(tenant, 3)
    await analytics.relay_all()
    totals = await analytics.totals(tenant)
    await world.lifecycle.archive(tenant, datetime.now(UTC) + timedelta(days=1))  # nothing idle
    for lead in archived:  # only these are idle enough: archive them alone
        world.query(
            "UPDATE lifecycle_catalog SET last_event_at = last_event_at - interval '90 days' "
            "WHERE lead = %s RETURNING 1",
            lead,
        )
    report = await world.lifecycle.archive(tenant, datetime.now(UTC))
    assert report.archived == 3
    before = {lead: world.app.history_of(tenant, conversation_id(tenant, lead)) for lead in hot}

    later = datetime.now(UTC) + timedelta(days=31)
    run = await world.lifecycle.retention(tenant, later)

    assert run.conversations == 6 and run.archives == 3 and run.memories == 6
    assert {(f.lead, f.before) for f in world.forgotten} == {
        (lead, later - timedelta(days=30)) for lead in hot + archived
    }  # knowledge forgets each lead's turns remembered before the cutoff
    after = await analytics.totals(tenant)
    assert {k: v for k, v in after.items() if k != "rows"} == {
        k: v for k, v in totals.items() if k != "rows"
    }  # the metrics stay; the rows lost their texts
    assert await read_model_texts(analytics, tenant) == {"[redacted]"}
    for lead in hot:
        after = world.app.history_of(tenant, conversation_id(tenant, lead))
        assert facts(after) == facts(before[lead])
        text = json.dumps(after)
        assert "price" not in text and '"Ann"' not in text
        assert "20 €" not in text and REDACTED in text
        composed = next(e for e in after if e["type"] == "ReplyComposed")
        assert composed["data"]["reply"]["tier"] == "L1"  # the metrics stay
    for lead in archived:
        raw = (world.archive_dir / tenant / "conversations").glob(
            f"{conversation_id(tenant, lead)}.json.gz"
        )
        [path] = list(raw)
        assert await world.lifecycle.restore(tenant, conversation_id(tenant, lead), "operator")
        text = json.dumps(world.app.history_of(tenant, conversation_id(tenant, lead)))
        assert "price" not in text and "20 €" not in text and REDACTED in text
        assert not path.exists()
    [(runs,)] = world.query("SELECT count(*) FROM retention_runs WHERE tenant_id = %s", tenant)
    assert runs == 1
    applied = subjects.CONVERSATION_EVENT.subject(
        tenant=tenant, lead=TENANT_LEAD, event="retention_applied"
    )
    assert await stored_count(world.bus, subjects.CONVERSATION.name, applied) == 1

    again = await world.lifecycle.retention(tenant, datetime.now(UTC) + timedelta(days=31))
    assert again.events == 0  # redaction is idempotent


async def read_model_texts(analytics: Analytics, tenant: str) -> set[str | None]:
    """Every text analytics holds for the tenant (messages, previews, lead names)."""
    async with tenant_transaction(analytics.pool, tenant) as conn:
        cur = await conn.execute(
            """SELECT text FROM analytics_messages WHERE text IS NOT NULL
               UNION SELECT last_text FROM analytics_conversations
               UNION SELECT lead_name FROM analytics_conversations WHERE lead_name IS NOT NULL"""
        )
        texts = {row[0] for row in await cur.fetchall()}
        cur = await conn.execute("SELECT lead FROM analytics_conversations WHERE lead = '_tenant'")
        assert not await cur.fetchall(), "a tenant-wide run shows as a conversation"
    return texts
