"""Archive 1,000 conversations of two tenants, restore a sample: histories come back
byte-for-byte, the hot store is empty of them meanwhile, each move is announced once, and the
analytics totals are number-for-number those of before the archive, after the restore, and
after a rebuild of the read models from the streams."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from taskpilot.contracts import subjects
from taskpilot.conversation.domain import conversation_id
from taskpilot.conversation.gdpr import stored_count
from taskpilot.conversation.service import ConversationNotFoundError
from tests.integration.lifecycle.analytics import Analytics
from tests.integration.lifecycle.conftest import World, add_tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

LATER = datetime.now(UTC) + timedelta(days=100)


def history(world: World, tenant: str, lead: str) -> str:
    return json.dumps(world.app.history_of(tenant, conversation_id(tenant, lead)))


async def announced(world: World, tenant: str, event: str) -> int:
    subject = subjects.CONVERSATION_EVENT.wildcard(tenant=tenant, event=event)
    return await stored_count(world.bus, subjects.CONVERSATION.name, subject)


async def test_archive_then_restore_gives_back_the_same_histories_and_totals(
    world: World, analytics: Analytics
) -> None:
    a, b = "la" + uuid.uuid4().hex[:6], "lb" + uuid.uuid4().hex[:6]
    await add_tenant(world.tenants, a)
    await add_tenant(world.tenants, b, archive_after_days=30)
    leads = {a: world.seed(a, 500), b: world.seed(b, 500)}
    held, active = world.seed(a, 2, prefix="49")
    world.app.take_over(a, str(conversation_id(a, held)), "agent@shop")
    conv = world.app.get(a, conversation_id(a, active))
    conv.receive("wamid.again", "text", "still there?", None, "cause")
    world.app.save(conv)
    await analytics.relay_all()
    before = {(t, lead): history(world, t, lead) for t, ls in leads.items() for lead in ls}
    totals = {t: await analytics.totals(t) for t in (a, b)}
    assert totals[a]["conversations"] == 502 and totals[b]["messages_in"] == 500

    reports = {t: await world.lifecycle.archive(t, LATER) for t in (a, b)}

    assert reports[a].archived == 500 and reports[b].archived == 500
    assert reports[a].skipped == {"held by a human": 1, "active": 1}
    assert world.hot_events(a, held) and world.hot_events(a, active)
    for tenant, lead in before:
        assert world.hot_events(tenant, lead) == 0 and world.archived_object(tenant, lead)
    assert await announced(world, a, "archived") == 500
    assert await announced(world, b, "archived") == 500
    assert {t: await analytics.totals(t) for t in (a, b)} == totals

    sample = random.Random(12).sample(sorted(before), 40)
    for tenant, lead in sample[:39]:
        assert await world.lifecycle.restore(tenant, conversation_id(tenant, lead), "operator")
    tenant, lead = sample[39]
    assert await world.lifecycle.ensure_hot(tenant, lead)  # the inbound path: a new message
    for tenant, lead in sample:
        assert history(world, tenant, lead) == before[(tenant, lead)]
        assert not world.archived_object(tenant, lead)
    assert await announced(world, a, "restored") + await announced(world, b, "restored") == 40
    assert {t: await analytics.totals(t) for t in (a, b)} == totals
    assert await analytics.rebuild() > 4000  # from the streams: archiving removed nothing
    assert {t: await analytics.totals(t) for t in (a, b)} == totals

    # Replay works: a restored conversation takes the next message at the next version.
    tenant, lead = sample[0]
    conv = world.app.get(tenant, conversation_id(tenant, lead))
    assert conv.receive("wamid.back", "text", "me again", None, "cause")
    world.app.save(conv)
    after = world.app.history_of(tenant, conv.id)
    last = json.loads(before[(tenant, lead)])[-1]["version"]
    assert [(e["version"], e["type"]) for e in after[-2:]] == [
        (last + 1, "MessageReceived"),
        (last + 2, "ReplyRequested"),
    ]


async def test_a_restore_is_refused_for_another_tenant_and_erasure_reaches_the_archive(
    world: World,
) -> None:
    a, b = "lc" + uuid.uuid4().hex[:6], "ld" + uuid.uuid4().hex[:6]
    await add_tenant(world.tenants, a)
    [lead] = world.seed(a, 1)
    stored = world.hot_events(a, lead)
    await world.lifecycle.archive(a, LATER)
    conv = conversation_id(a, lead)
    assert not await world.lifecycle.restore(b, conv, "operator")
    with pytest.raises(ConversationNotFoundError):
        await asyncio.to_thread(world.app.get, a, conv)

    assert await world.lifecycle.erase(a, conv) == stored
    assert not world.archived_object(a, lead)
    assert not await world.lifecycle.restore(a, conv, "operator")
