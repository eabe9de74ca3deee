"""The Conversation aggregate's decisions, exercised directly: no persistence, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from taskpilot.conversation.domain import HISTORY_TURNS, Conversation, conversation_id

TENANT, LEAD, NUMBER = "acme", "34600111222", "pn-1"


def reply(text: str | None = "Hi! How can we help?", **overrides: Any) -> dict[str, Any]:
    """A reply as the service passes it to ``compose`` (ReplyGenerated, dumped)."""
    fields: dict[str, Any] = {
        "text": text,
        "tier": "L1",
        "source": "template",
        "intent": "greeting",
        "model": "local",
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
        "cache_hit": False,
        "citations": [],
        "latency_ms": 3.0,
        "handoff": False,
        "handoff_reason": None,
    }
    return fields | overrides


def handoff(text: str | None = "A person will answer you shortly.", reason: str | None = "x"):
    return reply(text, tier="fallback", source="handoff", handoff=True, handoff_reason=reason)


def names(conversation: Conversation) -> list[str]:
    return [type(e).__name__ for e in conversation.collect_events()]


@pytest.fixture
def conversation() -> Conversation:
    started = Conversation(TENANT, LEAD, NUMBER)
    started.collect_events()
    return started


def receive(conversation: Conversation, wamid: str, text: str | None = "hola", kind="text"):
    return conversation.receive(wamid, kind, text, "Ana", f"cause-{wamid}")


# -- identity ------------------------------------------------------------------------------


def test_a_conversation_is_identified_by_tenant_and_lead() -> None:
    assert Conversation(TENANT, LEAD, NUMBER).id == conversation_id(TENANT, LEAD)
    assert conversation_id(TENANT, LEAD) == conversation_id(TENANT, LEAD)
    assert conversation_id(TENANT, LEAD) != conversation_id("other", LEAD)


def test_a_new_conversation_is_started_in_bot_mode() -> None:
    conversation = Conversation(TENANT, LEAD, NUMBER)

    assert names(conversation) == ["Started"]
    assert conversation.mode == "bot"
    assert conversation.history == []


# -- receive -------------------------------------------------------------------------------


def test_a_message_in_bot_mode_is_recorded_and_a_reply_requested(conversation) -> None:
    assert receive(conversation, "wamid.1", "hola") is True

    received, requested = conversation.collect_events()
    assert type(received).__name__ == "MessageReceived"
    assert (received.wamid, received.kind, received.text, received.lead_name) == (
        "wamid.1",
        "text",
        "hola",
        "Ana",
    )
    assert type(requested).__name__ == "ReplyRequested"
    assert (requested.turn_id, requested.text) == ("wamid.1", "hola")
    assert conversation.open_turns == {"wamid.1": "wamid.1"}


def test_events_carry_the_envelope_the_relay_needs(conversation) -> None:
    receive(conversation, "wamid.1")

    for recorded in conversation.collect_events():
        assert recorded.env == {
            "tenant_id": TENANT,
            "lead": LEAD,
            "phone_number_id": NUMBER,
            "correlation_id": "wamid.1",
            "causation_id": "cause-wamid.1",
        }


def test_a_redelivered_wamid_records_nothing(conversation) -> None:
    receive(conversation, "wamid.1")
    conversation.collect_events()

    assert receive(conversation, "wamid.1") is False
    assert conversation.collect_events() == []


def test_a_wamid_stays_seen_however_many_messages_follow(conversation) -> None:
    receive(conversation, "wamid.first")
    for n in range(3 * HISTORY_TURNS):
        receive(conversation, f"wamid.{n}")
    conversation.collect_events()

    assert receive(conversation, "wamid.first") is False
    assert conversation.collect_events() == []


@pytest.mark.parametrize(
    ("kind", "text", "prompt"),
    [
        ("image", None, "[image]"),
        ("image", "how much is this one?", "how much is this one?"),
        ("audio", None, "[audio]"),
        ("location", None, "[location]"),
        ("unknown", None, "[unknown]"),
        ("text", None, "[text]"),
        ("button_reply", "Book now", "Book now"),
        ("list_reply", "Haircut", "Haircut"),
        ("button", "Yes please", "Yes please"),
    ],
)
def test_only_answerable_kinds_with_text_are_prompted_with_their_text(
    conversation, kind: str, text: str | None, prompt: str
) -> None:
    receive(conversation, "wamid.1", text, kind=kind)

    _, requested = conversation.collect_events()
    assert requested.text == prompt


def test_history_keeps_a_placeholder_for_messages_without_text(conversation) -> None:
    receive(conversation, "wamid.1", None, kind="sticker")
    receive(conversation, "wamid.2", "nice pic", kind="image")

    assert conversation.history == [
        {"role": "lead", "text": "[sticker]"},
        {"role": "lead", "text": "nice pic"},
    ]


# -- compose -------------------------------------------------------------------------------


def test_composing_an_open_turn_records_the_reply(conversation) -> None:
    receive(conversation, "wamid.1")
    conversation.collect_events()

    assert conversation.compose("wamid.1", reply("Hi!"), "reply-1") is True

    [composed] = conversation.collect_events()
    assert type(composed).__name__ == "ReplyComposed"
    assert composed.turn_id == "wamid.1"
    assert composed.reply == reply("Hi!")
    assert composed.env["correlation_id"] == "wamid.1"
    assert composed.env["causation_id"] == "reply-1"
    assert conversation.open_turns == {}
    assert conversation.replies == {"wamid.1": "Hi!"}
    assert conversation.history[-1] == {"role": "assistant", "text": "Hi!"}


def test_a_second_compose_for_the_same_turn_is_ignored(conversation) -> None:
    receive(conversation, "wamid.1")
    conversation.compose("wamid.1", reply("Hi!"), "reply-1")
    conversation.collect_events()

    assert conversation.compose("wamid.1", reply("Hello again"), "reply-2") is False
    assert conversation.collect_events() == []
    assert conversation.replies == {"wamid.1": "Hi!"}


def test_composing_a_turn_never_asked_is_ignored(conversation) -> None:
    assert conversation.compose("wamid.nope", reply(), "reply-1") is False
    assert conversation.collect_events() == []


def test_a_silent_reply_closes_the_turn_without_anything_to_send(conversation) -> None:
    receive(conversation, "wamid.1", "👍")
    conversation.compose("wamid.1", reply(None, tier="L0", source="silence"), "reply-1")

    assert names(conversation)[-1] == "ReplyComposed"
    assert conversation.open_turns == {}
    assert conversation.replies == {}
    assert conversation.sent("wamid.1", "wamid.out", "sent-1", "wamid.1") is False


# -- handoff -------------------------------------------------------------------------------


def test_a_handoff_reply_hands_the_conversation_to_a_human(conversation) -> None:
    receive(conversation, "wamid.1", "I want a refund")
    conversation.collect_events()

    conversation.compose("wamid.1", handoff(reason="refund request"), "reply-1")

    composed, handed_off = conversation.collect_events()
    assert type(composed).__name__ == "ReplyComposed"
    assert type(handed_off).__name__ == "HandedOff"
    assert handed_off.reason == "refund request"
    assert conversation.mode == "human"


def test_a_handoff_without_a_reason_gets_a_default_one(conversation) -> None:
    receive(conversation, "wamid.1")
    conversation.compose("wamid.1", handoff(reason=None), "reply-1")

    handed_off = conversation.collect_events()[-1]
    assert handed_off.reason == "assistant could not answer"


def test_after_handoff_messages_are_recorded_but_no_reply_is_requested(conversation) -> None:
    receive(conversation, "wamid.1")
    conversation.compose("wamid.1", handoff(), "reply-1")
    conversation.collect_events()

    assert receive(conversation, "wamid.2", "hello?") is True

    assert names(conversation) == ["MessageReceived"]
    assert conversation.history[-1] == {"role": "lead", "text": "hello?"}
    assert conversation.open_turns == {}


def test_a_conversation_is_handed_off_only_once(conversation) -> None:
    receive(conversation, "wamid.1")
    receive(conversation, "wamid.2")  # both turns open before inference answers
    conversation.compose("wamid.1", handoff(), "reply-1")
    conversation.compose("wamid.2", handoff(), "reply-2")

    assert names(conversation).count("HandedOff") == 1


# -- outcomes of sending -------------------------------------------------------------------


@pytest.fixture
def composed(conversation) -> Conversation:
    receive(conversation, "wamid.1")
    conversation.compose("wamid.1", reply("Hi!"), "reply-1")
    conversation.collect_events()
    return conversation


def test_a_sent_reply_is_recorded_once(composed) -> None:
    assert composed.sent("wamid.1", "wamid.out.1", "sent-1", "wamid.1") is True

    [sent] = composed.collect_events()
    assert type(sent).__name__ == "ReplySent"
    assert (sent.turn_id, sent.wamid) == ("wamid.1", "wamid.out.1")
    assert composed.sent("wamid.1", "wamid.out.1", "sent-1", "wamid.1") is False
    assert composed.collect_events() == []


def test_an_outcome_for_a_turn_without_reply_is_ignored(composed) -> None:
    assert composed.sent("wamid.other", "wamid.out.1", "sent-1", "wamid.other") is False
    assert composed.failed("wamid.other", "boom", 500, "failed-1", "wamid.other") is False
    assert composed.collect_events() == []


def test_a_failed_reply_hands_off_in_bot_mode(composed) -> None:
    assert composed.failed("wamid.1", "recipient unreachable", 131026, "f-1", "wamid.1") is True

    failed, handed_off = composed.collect_events()
    assert type(failed).__name__ == "ReplyFailed"
    assert (failed.turn_id, failed.reason, failed.code) == (
        "wamid.1",
        "recipient unreachable",
        131026,
    )
    assert handed_off.reason == "reply could not be sent: recipient unreachable"
    assert composed.mode == "human"


def test_a_failed_reply_in_human_mode_does_not_hand_off_again(conversation) -> None:
    receive(conversation, "wamid.1")
    conversation.compose("wamid.1", handoff("We'll call you"), "reply-1")
    conversation.collect_events()

    assert conversation.failed("wamid.1", "timeout", None, "f-1", "wamid.1") is True
    assert names(conversation) == ["ReplyFailed"]


def test_a_redelivered_failure_is_recorded_once(composed) -> None:
    composed.failed("wamid.1", "timeout", None, "f-1", "wamid.1")
    composed.collect_events()

    assert composed.failed("wamid.1", "timeout", None, "f-1", "wamid.1") is False
    assert composed.collect_events() == []


# -- history -------------------------------------------------------------------------------


def test_the_history_sent_with_a_reply_request_is_capped(conversation) -> None:
    for n in range(2 * HISTORY_TURNS):
        receive(conversation, f"wamid.{n}", f"message {n}")
        conversation.compose(f"wamid.{n}", reply(f"answer {n}"), f"reply-{n}")
    conversation.collect_events()

    receive(conversation, "wamid.last", "last one")

    _, requested = conversation.collect_events()
    assert len(requested.history) == HISTORY_TURNS
    assert requested.history[-1] == {"role": "assistant", "text": f"answer {2 * HISTORY_TURNS - 1}"}


def test_a_reaction_is_recorded_but_never_answered(conversation) -> None:
    assert conversation.receive("wamid.r", "reaction", None, "Ana", "cause") is True
    [received] = conversation.collect_events()
    assert type(received).__name__ == "MessageReceived"
    assert conversation.mode == "bot"


def test_the_history_alternates_lead_and_assistant_turns(conversation) -> None:
    receive(conversation, "wamid.1", "hola")
    conversation.compose("wamid.1", reply("Hi!"), "reply-1")
    receive(conversation, "wamid.2", "price?")

    *_, requested = conversation.collect_events()
    assert requested.history[:2] == [
        {"role": "lead", "text": "hola"},
        {"role": "assistant", "text": "Hi!"},
    ]


def test_the_history_of_a_request_holds_only_earlier_turns(conversation) -> None:
    receive(conversation, "wamid.1", "hola")
    conversation.compose("wamid.1", reply("Hi!"), "reply-1")
    receive(conversation, "wamid.2", "price?")

    *_, requested = conversation.collect_events()
    assert requested.history == [
        {"role": "lead", "text": "hola"},
        {"role": "assistant", "text": "Hi!"},
    ]
