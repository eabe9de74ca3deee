"""What-if replay over HTTP: a past conversation through today's inference (played here by a
stand-in responder on the what-if subject), with nothing sent, stored or published."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from taskpilot.contracts import subjects
from taskpilot.contracts.inference import INFERENCE_WHAT_IF, ReplyWhatIf, WhatIfAnswer
from taskpilot.conversation.domain import conversation_id
from tests.integration.conversation.conftest import Harness
from tests.integration.conversation.test_turns import answer, new_lead, requests_for, sends_to

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_what_if_shows_then_and_now_and_sends_nothing(harness: Harness) -> None:
    h, lead = harness, new_lead()
    asks = await h.watch(subjects.GENERATE_REPLY.subject(tenant=h.tenant))
    sends = await h.watch(subjects.WA_SEND.subject(tenant=h.tenant))
    relayed = await h.watch(subjects.CONVERSATION_EVENT.wildcard(tenant=h.tenant, lead=lead))
    await h.lead_writes(lead, "how much is a cut?")
    [request] = await requests_for(h, asks, lead)
    await h.publish(answer(request, "A cut is 20 €."))
    await sends_to(sends, lead)
    await h.until_events(lead, "ReplyComposed")
    asked: list[ReplyWhatIf] = []

    async def inference_today(msg: Any) -> None:
        asked.append(ReplyWhatIf.model_validate_json(msg.data))
        now = WhatIfAnswer(text="A cut is 22 € since May.", tier="L2", source="model")
        await msg.respond(now.model_dump_json().encode())

    subscription = await h.nc.subscribe(
        INFERENCE_WHAT_IF.subject(tenant=h.tenant), cb=inference_today
    )
    before = (await h.timeline(lead), len(sends), len(asks), len(relayed))
    conv = conversation_id(h.tenant, lead)
    base = f"{h.base_url}/v1/tenants/{h.tenant}/conversations"
    try:
        async with h.client() as client:
            response = await client.post(f"{base}/{conv}/what-if")
            missing = await client.post(f"{base}/{uuid.uuid4()}/what-if")
    finally:
        await subscription.unsubscribe()

    assert response.status_code == 200, response.text
    [turn] = response.json()
    assert turn["turn_id"] == request.turn_id and turn["inbound"] == "how much is a cut?"
    assert (turn["then_reply"], turn["then_tier"]) == ("A cut is 20 €.", "L1")
    assert (turn["now_reply"], turn["now_tier"], turn["changed"]) == (
        "A cut is 22 € since May.",
        "L2",
        True,
    )
    [what_if] = asked
    assert (what_if.text, what_if.turn_id, what_if.lead) == (request.text, request.turn_id, lead)
    assert what_if.history == request.history
    assert missing.status_code == 404
    await h.nc.flush()
    # Nothing stored, sent, asked of inference's stream or relayed by the replay.
    assert (await h.timeline(lead), len(sends), len(asks), len(relayed)) == before
