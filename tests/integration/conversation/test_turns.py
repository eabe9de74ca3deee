"""Turn orchestration of the conversation service, through the bus and its HTTP API."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from taskpilot.contracts import subjects
from taskpilot.contracts.inference import GenerateReply, ReplyGenerated, ToolCall
from taskpilot.contracts.tools import ExecuteToolCall, PaymentReceived, ToolCallCompleted
from taskpilot.contracts.whatsapp import SendWhatsAppMessage, WhatsAppMessageSent
from taskpilot.conversation.domain import conversation_id
from taskpilot.runtime.testing import eventually
from tests.integration.conversation.conftest import HOLDING, Harness

pytestmark = pytest.mark.asyncio(loop_scope="session")


def new_lead() -> str:
    return "3460" + str(uuid.uuid4().int)[:8]


async def requests_for(h: Harness, box: list, lead: str, n: int = 1) -> list[GenerateReply]:
    async def arrived() -> list[GenerateReply] | None:
        found = [GenerateReply.model_validate_json(m.data) for m in box]
        mine = [g for g in found if g.lead == lead]
        return mine if len(mine) >= n else None

    return await eventually(arrived, timeout=10, what=f"{n} GenerateReply for {lead}")


async def sends_to(box: list, lead: str, n: int = 1) -> list[SendWhatsAppMessage]:
    async def arrived() -> list[SendWhatsAppMessage] | None:
        mine = [
            s
            for s in (SendWhatsAppMessage.model_validate_json(m.data) for m in box)
            if s.to == lead
        ]
        return mine if len(mine) >= n else None

    return await eventually(arrived, timeout=10, what=f"{n} sends to {lead}")


def answer(request: GenerateReply, text: str | None, **fields: object) -> ReplyGenerated:
    return request.caused(
        ReplyGenerated,
        conversation_id=request.conversation_id,
        turn_id=request.turn_id,
        text=text,
        tier="L1",
        source="template",
        round=request.round,
        **fields,
    )


async def test_a_burst_is_answered_once_with_all_its_messages(harness: Harness) -> None:
    h, lead = harness, new_lead()
    asks = await h.watch(subjects.GENERATE_REPLY.subject(tenant=h.tenant))
    sends = await h.watch(subjects.WA_SEND.subject(tenant=h.tenant))
    for text in ("hi", "I'd like to know", "your prices for a cut"):
        await h.lead_writes(lead, text)
    [request] = await requests_for(h, asks, lead)
    assert request.text == "hi\nI'd like to know\nyour prices for a cut"
    await h.publish(answer(request, "A cut is 20 €."))
    [send] = await sends_to(sends, lead)
    assert send.text == "A cut is 20 €." and send.reference == request.turn_id
    types = await h.until_events(
        lead,
        "MessageReceived",
        "MessageReceived",
        "MessageReceived",
        "ReplyRequested",
        "ReplyComposed",
    )
    assert types.count("ReplyRequested") == 1


async def test_no_answer_in_time_means_holding_reply_and_handoff(harness: Harness) -> None:
    h, lead = harness, new_lead()
    sends = await h.watch(subjects.WA_SEND.subject(tenant=h.tenant))
    await h.lead_writes(lead, "is anyone there?")
    [send] = await sends_to(sends, lead)
    assert send.text == HOLDING
    types = await h.until_events(lead, "TurnTimedOut", "ReplyComposed", "HandedOff")
    assert types[-3:] == ["TurnTimedOut", "ReplyComposed", "HandedOff"]


async def test_tool_calls_run_then_inference_is_asked_again(harness: Harness) -> None:
    h, lead = harness, new_lead()
    asks = await h.watch(subjects.GENERATE_REPLY.subject(tenant=h.tenant))
    tools = await h.watch(subjects.TOOL_EXECUTE.subject(tenant=h.tenant))
    await h.lead_writes(lead, "can I come tomorrow at 10?")
    [first] = await requests_for(h, asks, lead)
    await h.publish(
        answer(
            first,
            None,
            tool_calls=[
                ToolCall(id="call_a", tool="check_availability", arguments={"day": "tomorrow"}),
                ToolCall(id="call_b", tool="book_slot", arguments={"at": "10:00"}),
            ],
        )
    )

    async def executed() -> list[ExecuteToolCall] | None:
        calls = [ExecuteToolCall.model_validate_json(m.data) for m in tools]
        mine = [c for c in calls if c.conversation_id == first.conversation_id]
        return mine if len(mine) == 2 else None

    calls = await eventually(executed, timeout=10, what="two tool calls")
    for call in reversed(calls):
        await h.publish(
            call.caused(
                ToolCallCompleted,
                conversation_id=call.conversation_id,
                tool_call_id=call.tool_call_id,
                tool=call.tool,
                result={"ok": call.tool},
            )
        )
    _, second = await requests_for(h, asks, lead, 2)
    assert second.round == 1 and second.turn_id == first.turn_id
    assert {r.call_id: r.result for r in second.tool_results} == {
        "call_a": {"ok": "check_availability"},
        "call_b": {"ok": "book_slot"},
    }


async def test_human_takeover_silences_the_bot_until_handed_back(harness: Harness) -> None:
    h, lead = harness, new_lead()
    asks = await h.watch(subjects.GENERATE_REPLY.subject(tenant=h.tenant))
    sends = await h.watch(subjects.WA_SEND.subject(tenant=h.tenant))
    conv = conversation_id(h.tenant, lead)
    base = f"{h.base_url}/v1/tenants/{h.tenant}/conversations/{conv}"
    await h.lead_writes(lead, "I have a complaint")
    [request] = await requests_for(h, asks, lead)
    async with h.client() as client:
        # The acting person is the token's, whoever the body names.
        taken = await client.post(f"{base}/takeover", json={"agent": "someone-else"})
        assert taken.json() == {"changed": True}
        await h.publish(answer(request, "late bot answer"))  # superseded: must not be sent
        replied = await client.post(
            f"{base}/messages", json={"agent": "maria", "text": "Hi, Maria here."}
        )
        assert replied.status_code == 202
        [send] = await sends_to(sends, lead)
        assert send.text == "Hi, Maria here."
        await h.publish(
            send.caused(
                WhatsAppMessageSent,
                conversation_id=str(conv),
                command_id=str(send.event_id),
                wamid="wamid.out-" + uuid.uuid4().hex,
                to=lead,
                reference=send.reference,
            )
        )
        await h.lead_writes(lead, "thanks Maria")
        await h.until_events(
            lead, "HumanReplied", "ReplySent", "MessageReceived", "MessageReceived"
        )
        assert len(await requests_for(h, asks, lead)) == 1  # the bot asked nothing more
        acts = [e for e in await h.timeline(lead) if e["type"] in ("HandedOff", "HumanReplied")]
        assert {e["data"].get("by", e["data"].get("agent")) for e in acts} == {
            f"test-owner-{h.tenant}"
        }
        released = await client.post(f"{base}/release", json={"agent": "maria"})
        assert released.json() == {"changed": True}
        await h.lead_writes(lead, "one more question")
        await requests_for(h, asks, lead, 2)
    assert [s.text for s in await sends_to(sends, lead)] == ["Hi, Maria here."]


async def test_a_human_cannot_write_freely_after_24_hours(harness: Harness) -> None:
    h, lead = harness, new_lead()
    await h.lead_writes(lead, "hello", at=datetime.now(UTC) - timedelta(hours=25))
    await h.until_events(lead, "MessageReceived")
    conv = conversation_id(h.tenant, lead)
    base = f"{h.base_url}/v1/tenants/{h.tenant}/conversations/{conv}"
    async with h.client() as client:
        await client.post(f"{base}/takeover", json={"agent": "maria"})
        refused = await client.post(f"{base}/messages", json={"agent": "maria", "text": "hi"})
    assert refused.status_code == 409 and "24 hours" in refused.json()["detail"]


async def test_export_then_erase_a_lead(harness: Harness) -> None:
    h, lead = harness, new_lead()
    erased = await h.watch(
        subjects.CONVERSATION_EVENT.subject(tenant=h.tenant, lead=lead, event="lead_erased")
    )
    await h.lead_writes(lead, "my name is Ana, call me on +34 600 000 000")
    await h.until_events(lead, "MessageReceived", "ReplyRequested")
    base = f"{h.base_url}/v1/tenants/{h.tenant}/leads/{lead}"
    async with h.client() as client:
        export = (await client.get(f"{base}/export")).json()
        assert export["lead"] == lead
        assert "call me on +34" in json.dumps(export["events"])
        result = (await client.delete(base)).json()
        assert result["events_deleted"] >= 3 and result["messages_purged"] >= 1
        # Erased first (nothing erased when knowledge is away) and again at the end.
        assert result["memories_erased"] == 4 and h.memory_erasures == [lead, lead]
        assert (await client.get(f"{base}/export")).status_code == 404
    assert await h.timeline(lead) == []
    await eventually(lambda: _has(erased), timeout=5, what="LeadErased published")
    partitioning = subjects.WHATSAPP_IN.partitioning
    assert partitioning is not None
    for stream, subject in (
        (subjects.WHATSAPP_IN.name, f"{partitioning.stored_prefix}.*.{h.tenant}.{lead}.>"),
        (subjects.CONVERSATION.name, f"conversation.{h.tenant}.{lead}.>"),
    ):
        left = await h.nc.jetstream().stream_info(stream, subjects_filter=subject)
        kept = {
            s: n for s, n in (left.state.subjects or {}).items() if not s.endswith("lead_erased")
        }
        assert kept == {}, f"{stream} still holds {kept}"


async def _has(box: list) -> bool:
    return bool(box)


async def test_a_confirmed_payment_is_recorded_once_and_thanked(harness: Harness) -> None:
    h, lead = harness, new_lead()
    sends = await h.watch(subjects.WA_SEND.subject(tenant=h.tenant))
    await h.lead_writes(lead, "send me the payment link")
    await h.until_events(lead, "ReplyRequested")
    conv = str(conversation_id(h.tenant, lead))
    payment = PaymentReceived(
        tenant_id=h.tenant,
        correlation_id="evt_1",
        conversation_id=conv,
        provider_event_id="evt_1",
        checkout_session_id="cs_test_1",
        amount_minor=3500,
        currency="eur",
    )
    await h.publish(payment)
    await h.bus.publish(payment, msg_id="stripe-retried-the-webhook")
    [thanks] = await sends_to(sends, lead)
    assert thanks.text == "Thank you! We've received your payment of 35.00 EUR. 🙏"
    types = await h.until_events(lead, "PaymentConfirmed")
    assert types.count("PaymentConfirmed") == 1
