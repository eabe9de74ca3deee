"""A finished turn reaches the lead's long-term memory, end to end: webhook → reply sent through
the Graph sandbox → TurnFinished → knowledge remembers → recall for that lead returns it."""

from __future__ import annotations

import uuid

import httpx
import pytest

from taskpilot.cli import demo
from taskpilot.contracts.knowledge import MemoryHit, MemoryResult, RecallMemory
from taskpilot.ingest.meta import text_webhook
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.testing import eventually
from tests.e2e.conftest import System
from tests.e2e.test_thin_slice import new_lead, post_webhook, sends_to

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_finished_turn_is_recalled_for_that_lead_only(system: System) -> None:
    lead, other = new_lead(), new_lead()
    question = "What time do you open?"
    bus = Bus(system.nats_url, name="e2e-memory")
    await bus.connect()
    try:

        async def recall(who: str) -> list[MemoryHit]:
            request = RecallMemory(
                tenant_id=demo.DEMO_TENANT,
                correlation_id=f"e2e-recall-{uuid.uuid4()}",
                lead=who,
                query="opening hours",
                top_k=3,
                min_score=0.0,
            )
            result = await bus.request(request, MemoryResult, timeout=10)
            assert result.error is None, result.error
            return result.hits

        assert await recall(lead) == []
        async with httpx.AsyncClient(timeout=10) as client:
            payload = text_webhook(demo.DEMO_NUMBER, lead, question, f"wamid.e2e-{uuid.uuid4()}")
            assert (await post_webhook(client, system, payload)).status_code == 200
            [sent] = await eventually(
                lambda: sends_to(client, system, lead), timeout=20, what="reply sent"
            )

        async def remembered() -> list[MemoryHit] | None:
            return await recall(lead) or None

        [hit] = await eventually(remembered, timeout=30, what="the turn in the lead's memory")
        assert hit.lead_text == question
        assert hit.reply_text == sent["text"] == demo.DEMO_FAQS[0][1]
        assert await recall(other) == []  # one lead's memory is not another's
    finally:
        await bus.close()
