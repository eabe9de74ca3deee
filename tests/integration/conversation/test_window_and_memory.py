"""The bot's side of the 24-hour window, and finished turns reaching the lead's memory,
through the bus (the tests play inference, the sender and knowledge's memory responder)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from taskpilot.contracts import subjects
from taskpilot.contracts.conversation import ConversationHandedOff, TemplateSent
from taskpilot.contracts.knowledge import KNOWLEDGE_MEMORY_REMEMBER, MemoryResult, RememberTurn
from taskpilot.contracts.whatsapp import SendWhatsAppMessage, TemplateMessage, WhatsAppMessageSent
from taskpilot.conversation.domain import conversation_id
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import eventually
from taskpilot.runtime.testing.tokens import bearer
from taskpilot.tenancy import BusinessProfile, SecretBox, Tenant, TenantDirectory, TenantSecrets
from taskpilot.tenancy.tokens import LocalIssuer
from tests.integration.conversation.conftest import Harness
from tests.integration.conversation.test_turns import answer, new_lead, requests_for, sends_to

pytestmark = pytest.mark.asyncio(loop_scope="session")

REPLY_READY = TemplateMessage(
    name="reply_ready",
    language="es_ES",
    components=[{"type": "body", "parameters": [{"type": "text", "text": "Peluquería"}]}],
)


@pytest.fixture(scope="module")
async def templated(harness: Harness, token_issuer: LocalIssuer) -> Harness:
    """The same service, as seen by a second tenant that configured a template for replies
    after the 24-hour window."""
    tenant = "tpl" + uuid.uuid4().hex[:6]
    pool = await open_pool(harness.database_url, max_size=1)
    try:
        await TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS)).upsert(
            Tenant(
                id=tenant,
                name="Peluquería",
                profile=BusinessProfile(name="Peluquería", window_template=REPLY_READY),
                secrets=TenantSecrets(
                    app_secret=SecretStr("a"),
                    access_token=SecretStr("b"),
                    verify_token=SecretStr("c"),
                ),
                phone_number_ids=["778"],
            )
        )
    finally:
        await pool.close()
    return dataclasses.replace(
        harness, tenant=tenant, headers=bearer(token_issuer, tenant), seen={}, memory_erasures=[]
    )


async def test_a_reply_after_the_24_hour_window_hands_off_instead_of_failing(
    harness: Harness,
) -> None:
    h, lead = harness, new_lead()
    asks = await h.watch(subjects.GENERATE_REPLY.subject(tenant=h.tenant))
    sends = await h.watch(subjects.WA_SEND.subject(tenant=h.tenant))
    handoffs = await h.watch(
        subjects.CONVERSATION_EVENT.subject(tenant=h.tenant, lead=lead, event="handed_off")
    )
    # The lead wrote 25 hours ago (say, a long tool round): the answer may not go out as text.
    await h.lead_writes(lead, "can you book me in?", at=datetime.now(UTC) - timedelta(hours=25))
    [request] = await requests_for(h, asks, lead)
    await h.publish(answer(request, "Booked for Monday 10:00."))

    types = await h.until_events(lead, "ReplyComposed", "WindowClosed", "HandedOff")
    assert types[-3:] == ["ReplyComposed", "WindowClosed", "HandedOff"]
    [composed] = [e for e in await h.timeline(lead) if e["type"] == "ReplyComposed"]
    assert composed["data"]["reply"]["withheld"] == "window_closed"

    async def handed_off() -> ConversationHandedOff | None:
        found = [ConversationHandedOff.model_validate_json(m.data) for m in handoffs]
        return found[0] if found else None

    # Relayed in order: once the hand-off is on the bus, a send would have been before it.
    assert "24-hour window" in (await eventually(handed_off, timeout=10, what="hand-off")).reason
    assert [s for s in sends if SendWhatsAppMessage.model_validate_json(s.data).to == lead] == []


async def test_a_finished_turn_is_remembered_for_the_lead(harness: Harness) -> None:
    h, lead = harness, new_lead()
    remembered: list[RememberTurn] = []

    async def knowledge_remembers(msg: Any) -> None:
        remembered.append(RememberTurn.model_validate_json(msg.data))
        await msg.respond(MemoryResult(stored=1).model_dump_json().encode())

    subscription = await h.nc.subscribe(
        KNOWLEDGE_MEMORY_REMEMBER.subject(tenant=h.tenant), cb=knowledge_remembers
    )
    try:
        asks = await h.watch(subjects.GENERATE_REPLY.subject(tenant=h.tenant))
        sends = await h.watch(subjects.WA_SEND.subject(tenant=h.tenant))
        await h.lead_writes(lead, "do you cut curly hair?")
        [request] = await requests_for(h, asks, lead)
        await h.publish(answer(request, "Yes, Marta specialises in curls."))
        [send] = await sends_to(sends, lead)
        assert remembered == []  # composed is not received: nothing to remember yet
        await h.publish(
            send.caused(
                WhatsAppMessageSent,
                conversation_id=send.conversation_id,
                command_id=str(send.event_id),
                wamid="wamid.out-" + uuid.uuid4().hex,
                to=lead,
                reference=send.reference,
            )
        )

        async def arrived() -> list[RememberTurn] | None:
            mine = [r for r in remembered if r.lead == lead]
            return mine or None

        [turn] = await eventually(arrived, timeout=10, what="RememberTurn for the lead")
        assert (turn.turn_id, turn.lead_text, turn.reply_text) == (
            request.turn_id,
            "do you cut curly hair?",
            "Yes, Marta specialises in curls.",
        )
        assert turn.correlation_id == request.correlation_id
        types = await h.until_events(lead, "ReplySent", "TurnFinished")
        assert types[-2:] == ["ReplySent", "TurnFinished"]
        assert str(conversation_id(h.tenant, lead)) == send.conversation_id
    finally:
        await subscription.unsubscribe()


async def test_a_reply_after_the_24_hour_window_goes_as_the_tenants_template(
    templated: Harness,
) -> None:
    h, lead = templated, new_lead()
    asks = await h.watch(subjects.GENERATE_REPLY.subject(tenant=h.tenant))
    sends = await h.watch(subjects.WA_SEND.subject(tenant=h.tenant))
    templates = await h.watch(
        subjects.CONVERSATION_EVENT.subject(tenant=h.tenant, lead=lead, event="template_sent")
    )
    await h.lead_writes(lead, "is my colour ready?", at=datetime.now(UTC) - timedelta(hours=26))
    [request] = await requests_for(h, asks, lead)
    await h.publish(answer(request, "Yes, come by at 5."))

    [send] = await sends_to(sends, lead)
    assert send.text is None and send.template == REPLY_READY
    assert send.reference == request.turn_id
    types = await h.until_events(lead, "ReplyComposed", "WindowClosed", "TemplateSent")
    assert types[-3:] == ["ReplyComposed", "WindowClosed", "TemplateSent"]
    assert "HandedOff" not in types  # the lead can answer the template and the bot goes on

    async def published() -> TemplateSent | None:
        found = [TemplateSent.model_validate_json(m.data) for m in templates]
        return found[0] if found else None

    event = await eventually(published, timeout=10, what="TemplateSent on the bus")
    assert (event.template, event.language) == ("reply_ready", "es_ES")
