"""The relay's pure translation of stored domain events into public messages and commands."""

from __future__ import annotations

from typing import Any

import pytest

from taskpilot.contracts import Message
from taskpilot.contracts import conversation as public
from taskpilot.contracts.inference import GenerateReply, Turn
from taskpilot.contracts.whatsapp import SendWhatsAppMessage
from taskpilot.conversation.domain import Conversation
from taskpilot.conversation.relay import outgoing
from taskpilot.conversation.service import Conversations

TENANT, LEAD, NUMBER = "acme", "34600111222", "pn-1"


def reply(text: str | None = "Hi!", **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "text": text,
        "tier": "L1",
        "source": "faq",
        "intent": "faq",
        "model": "local",
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
        "cache_hit": False,
        "citations": [{"id": "faq-1", "kind": "faq", "title": "Prices", "score": 0.93}],
        "latency_ms": 4.0,
        "handoff": False,
        "handoff_reason": None,
    }
    return fields | overrides


def stored_events(app: Conversations) -> list[Any]:
    return [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(1, 100)]


def the(events: list[Any], name: str, nth: int = 0) -> Any:
    return [e for e in events if type(e).__name__ == name][nth]


def messages(event: Any) -> list[Message]:
    return [message for message, _ in outgoing(event)]


@pytest.fixture(scope="module")
def events() -> list[Any]:
    """One conversation's stored events: a sent answer, a silence, a failed handoff."""
    app = Conversations(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    c = Conversation(TENANT, LEAD, NUMBER)
    c.receive("wamid.1", "text", "how much is a haircut?", "Ana", "in-1")
    c.compose("wamid.1", reply("A haircut is 15 EUR."), "gen-1")
    c.sent("wamid.1", "wamid.out.1", "sent-1", "wamid.1")
    c.receive("wamid.2", "text", "👍", "Ana", "in-2")
    c.compose("wamid.2", reply(None, tier="L0", source="silence", citations=[]), "gen-2")
    c.receive("wamid.3", "text", "can I get a refund?", "Ana", "in-3")
    c.compose(
        "wamid.3",
        reply(
            "Someone from Acme will get back to you.",
            tier="fallback",
            source="handoff",
            citations=[],
            handoff=True,
            handoff_reason="no grounded answer",
        ),
        "gen-3",
    )
    c.failed("wamid.3", "recipient unreachable", 131026, "failed-3", "wamid.3")
    app.save(c)
    return stored_events(app)


def test_the_stored_history_is_what_the_scenario_did(events) -> None:
    assert [type(e).__name__ for e in events] == [
        "Started",
        "MessageReceived",
        "ReplyRequested",
        "ReplyComposed",
        "ReplySent",
        "MessageReceived",
        "ReplyRequested",
        "ReplyComposed",
        "MessageReceived",
        "ReplyRequested",
        "ReplyComposed",
        "HandedOff",
        "ReplyFailed",
    ]


def test_starting_a_conversation_publishes_nothing(events) -> None:
    assert messages(the(events, "Started")) == []


def test_a_received_message_becomes_lead_message_received(events) -> None:
    event = the(events, "MessageReceived")

    [message] = messages(event)

    assert isinstance(message, public.LeadMessageReceived)
    assert message.tenant_id == TENANT
    assert message.lead == LEAD
    assert message.conversation_id == str(event.originator_id)
    assert message.sequence == event.originator_version
    assert message.occurred_at == event.timestamp
    assert (message.correlation_id, message.causation_id) == ("wamid.1", "in-1")
    assert (message.wamid, message.kind, message.text, message.lead_name) == (
        "wamid.1",
        "text",
        "how much is a haircut?",
        "Ana",
    )


def test_a_reply_request_becomes_a_public_event_and_a_generate_command(events) -> None:
    event = the(events, "ReplyRequested")

    [requested, command] = messages(event)

    assert isinstance(requested, public.ReplyRequested)
    assert (requested.turn_id, requested.text) == ("wamid.1", "how much is a haircut?")
    assert isinstance(command, GenerateReply)
    assert command.tenant_id == TENANT
    assert command.lead == LEAD
    assert command.conversation_id == str(event.originator_id)
    assert command.correlation_id == "wamid.1"
    assert command.causation_id == str(requested.event_id)
    assert (command.turn_id, command.text) == ("wamid.1", "how much is a haircut?")


def test_the_generate_command_carries_the_history(events) -> None:
    event = the(events, "ReplyRequested", nth=1)

    _, command = messages(event)

    assert command.history[:2] == [
        Turn(role="lead", text="how much is a haircut?"),
        Turn(role="assistant", text="A haircut is 15 EUR."),
    ]
    assert [t.model_dump() for t in command.history] == event.history


def test_a_composed_reply_with_text_becomes_an_event_and_a_send_command(events) -> None:
    event = the(events, "ReplyComposed")

    [composed, send] = messages(event)

    assert isinstance(composed, public.ReplyComposed)
    assert composed.turn_id == "wamid.1"
    assert (composed.text, composed.tier, composed.source) == ("A haircut is 15 EUR.", "L1", "faq")
    assert [c.id for c in composed.citations] == ["faq-1"]
    assert isinstance(send, SendWhatsAppMessage)
    assert send.to == LEAD
    assert send.phone_number_id == NUMBER
    assert send.text == "A haircut is 15 EUR."
    assert send.reference == "wamid.1"
    assert send.conversation_id == str(event.originator_id)
    assert send.correlation_id == "wamid.1"
    assert send.causation_id == str(composed.event_id)


def test_a_silent_reply_sends_nothing(events) -> None:
    event = the(events, "ReplyComposed", nth=1)

    [composed] = messages(event)

    assert isinstance(composed, public.ReplyComposed)
    assert (composed.text, composed.source) == (None, "silence")


def test_a_handoff_reply_is_still_sent_and_the_handoff_is_published(events) -> None:
    [composed, send] = messages(the(events, "ReplyComposed", nth=2))
    [handed_off] = messages(the(events, "HandedOff"))

    assert composed.source == "handoff"
    assert "handoff" not in composed.model_dump()
    assert send.text == "Someone from Acme will get back to you."
    assert isinstance(handed_off, public.ConversationHandedOff)
    assert handed_off.reason == "no grounded answer"


def test_send_outcomes_become_public_events(events) -> None:
    [sent] = messages(the(events, "ReplySent"))
    [failed] = messages(the(events, "ReplyFailed"))

    assert isinstance(sent, public.ReplySent)
    assert (sent.turn_id, sent.wamid, sent.causation_id) == ("wamid.1", "wamid.out.1", "sent-1")
    assert isinstance(failed, public.ReplyFailed)
    assert (failed.turn_id, failed.reason, failed.code) == (
        "wamid.3",
        "recipient unreachable",
        131026,
    )


def test_ids_are_derived_from_the_event_so_a_republish_is_a_duplicate(events) -> None:
    for event in events:
        first = [(m.event_id, msg_id) for m, msg_id in outgoing(event)]
        again = [(m.event_id, msg_id) for m, msg_id in outgoing(event)]
        assert first == again


def test_msg_ids_name_the_event_and_its_role(events) -> None:
    event = the(events, "ReplyRequested")
    base = f"{event.originator_id}:{event.originator_version}"

    assert [msg_id for _, msg_id in outgoing(event)] == [f"{base}:event", f"{base}:command"]


def test_every_published_message_has_its_own_ids(events) -> None:
    published = [pair for event in events for pair in outgoing(event)]

    assert len({m.event_id for m, _ in published}) == len(published)
    assert len({msg_id for _, msg_id in published}) == len(published)


def test_every_published_message_has_a_subject_and_survives_the_wire(events) -> None:
    for event in events:
        for message in messages(event):
            assert message.subject().startswith(
                ("conversation.acme.", "inference.acme.", "wa.out.acme.")
            )
            assert type(message).from_bytes(message.to_bytes()) == message


def test_public_conversation_events_go_to_their_own_subjects(events) -> None:
    subjects = {m.subject() for e in events for m in messages(e)}

    assert subjects == {
        "conversation.acme.lead_message_received",
        "conversation.acme.reply_requested",
        "conversation.acme.reply_composed",
        "conversation.acme.reply_sent",
        "conversation.acme.reply_failed",
        "conversation.acme.handed_off",
        "inference.acme.generate_reply",
        "wa.out.acme.send",
    }
