"""The Conversation aggregate's decisions, exercised directly: no persistence, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskpilot.conversation.domain import (
    HISTORY_TURNS,
    MAX_TOOL_ROUNDS,
    SERVICE_WINDOW,
    Conversation,
    NotHeldByHumanError,
    WindowClosedError,
    conversation_id,
    tool_call_key,
)

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


def receive(
    conversation: Conversation,
    wamid: str,
    text: str | None = "hola",
    kind="text",
    *,
    at: datetime | None = None,
    debounce: bool = False,
):
    return conversation.receive(
        wamid, kind, text, "Ana", f"cause-{wamid}", at=at, debounce=debounce
    )


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
    assert (requested.turn_id, requested.text, requested.round) == ("wamid.1", "hola", 0)
    assert requested.tool_results == []
    # A turn now keeps what its later rounds need, not only its correlation.
    assert list(conversation.open_turns) == ["wamid.1"]
    turn = conversation.open_turns["wamid.1"]
    assert (turn["correlation"], turn["round"], turn["text"], turn["calls"]) == (
        "wamid.1",
        0,
        "hola",
        {},
    )


def test_events_carry_the_envelope_the_relay_needs(conversation) -> None:
    receive(conversation, "wamid.1")

    for recorded in conversation.collect_events():
        assert recorded.env == {
            "tenant_id": TENANT,
            "lead": LEAD,
            "phone_number_id": NUMBER,
            "correlation_id": "wamid.1",
            "causation_id": "cause-wamid.1",
            "trace": {},  # Conversation.trace_context(): empty unless OpenTelemetry is plugged in
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
    assert handed_off.reason == "the assistant could not answer"
    assert handed_off.by == "assistant"


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

    sent, finished = composed.collect_events()
    assert type(sent).__name__ == "ReplySent"
    assert (sent.turn_id, sent.wamid) == ("wamid.1", "wamid.out.1")
    assert type(finished).__name__ == "TurnFinished"
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


# -- bursts --------------------------------------------------------------------------------

T0 = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)


def test_a_debounced_message_is_recorded_and_waits_for_the_burst_to_end(conversation) -> None:
    assert receive(conversation, "wamid.1", "hi", debounce=True) is True

    assert names(conversation) == ["MessageReceived"]
    assert conversation.open_turns == {}
    assert [m["wamid"] for m in conversation.pending] == ["wamid.1"]


def test_a_burst_of_three_messages_is_answered_by_one_turn(conversation) -> None:
    for n, text in enumerate(["hi", "do you open on sunday", "and at what time?"], 1):
        receive(conversation, f"wamid.{n}", text, debounce=True)
    conversation.collect_events()

    assert conversation.flush("burst-1") is True

    [requested] = conversation.collect_events()
    assert type(requested).__name__ == "ReplyRequested"
    assert requested.turn_id == "wamid.3"
    assert requested.text == "hi\ndo you open on sunday\nand at what time?"
    assert requested.history == []
    assert (requested.env["correlation_id"], requested.env["causation_id"]) == (
        "wamid.3",
        "burst-1",
    )
    assert conversation.pending == []

    assert conversation.compose("wamid.3", reply("Sundays 10 to 14."), "reply-1") is True
    assert conversation.replies == {"wamid.3": "Sundays 10 to 14."}
    assert conversation.open_turns == {}


def test_a_burst_is_answered_once(conversation) -> None:
    receive(conversation, "wamid.1", debounce=True)
    conversation.flush("burst-1")
    conversation.collect_events()

    assert conversation.flush("burst-2") is False
    assert conversation.collect_events() == []


def test_a_flush_with_nothing_pending_does_nothing(conversation) -> None:
    assert conversation.flush("burst-1") is False
    assert conversation.collect_events() == []


def test_the_history_of_a_burst_holds_only_what_came_before_it(conversation) -> None:
    receive(conversation, "wamid.1", "hola")
    conversation.compose("wamid.1", reply("Hi!"), "reply-1")
    receive(conversation, "wamid.2", "a haircut", debounce=True)
    receive(conversation, "wamid.3", "for tomorrow", debounce=True)
    conversation.collect_events()

    conversation.flush("burst-1")

    [requested] = conversation.collect_events()
    assert requested.text == "a haircut\nfor tomorrow"
    assert requested.history == [
        {"role": "lead", "text": "hola"},
        {"role": "assistant", "text": "Hi!"},
    ]


# -- superseded turns ----------------------------------------------------------------------


def test_a_message_while_a_turn_is_open_supersedes_it(conversation) -> None:
    receive(conversation, "wamid.1", "do you cut kids' hair?")
    conversation.collect_events()

    receive(conversation, "wamid.2", "and how much is it?")

    received, superseded, requested = conversation.collect_events()
    assert type(received).__name__ == "MessageReceived"
    assert type(superseded).__name__ == "TurnSuperseded"
    assert superseded.turn_id == "wamid.1"
    assert type(requested).__name__ == "ReplyRequested"
    assert requested.turn_id == "wamid.2"
    assert requested.text == "do you cut kids' hair?\nand how much is it?"
    assert requested.history == []
    assert list(conversation.open_turns) == ["wamid.2"]


def test_the_late_reply_for_a_superseded_turn_is_ignored(conversation) -> None:
    receive(conversation, "wamid.1", "do you cut kids' hair?")
    receive(conversation, "wamid.2", "and how much is it?")
    conversation.collect_events()

    assert conversation.compose("wamid.1", reply("Yes, we do."), "reply-1") is False
    assert conversation.collect_events() == []
    assert conversation.replies == {}

    assert conversation.compose("wamid.2", reply("Yes, 12 EUR."), "reply-2") is True
    assert conversation.replies == {"wamid.2": "Yes, 12 EUR."}
    assert conversation.open_turns == {}


def test_every_new_message_widens_the_next_turn_to_all_unanswered_ones(conversation) -> None:
    receive(conversation, "wamid.1", "hi")
    receive(conversation, "wamid.2", "a haircut")
    receive(conversation, "wamid.3", "tomorrow?")

    events = conversation.collect_events()
    assert [e.turn_id for e in events if type(e).__name__ == "TurnSuperseded"] == [
        "wamid.1",
        "wamid.2",
    ]
    assert (events[-1].turn_id, events[-1].text) == ("wamid.3", "hi\na haircut\ntomorrow?")
    assert events[-1].history == []


def test_a_burst_ending_while_a_turn_is_open_supersedes_it(conversation) -> None:
    receive(conversation, "wamid.1", "hi", debounce=True)
    conversation.flush("burst-1")
    receive(conversation, "wamid.2", "are you open?", debounce=True)
    conversation.collect_events()

    conversation.flush("burst-2")

    superseded, requested = conversation.collect_events()
    assert superseded.turn_id == "wamid.1"
    assert (requested.turn_id, requested.text) == ("wamid.2", "hi\nare you open?")


def test_a_reaction_leaves_the_open_turn_alone(conversation) -> None:
    receive(conversation, "wamid.1")
    conversation.collect_events()

    receive(conversation, "wamid.r", None, kind="reaction")

    assert names(conversation) == ["MessageReceived"]
    assert list(conversation.open_turns) == ["wamid.1"]


# -- tool calls ----------------------------------------------------------------------------

KEY_A = tool_call_key("wamid.1", 0, "call_a")
KEY_B = tool_call_key("wamid.1", 0, "call_b")
SLOTS = {"slots": ["10:00", "11:30"]}
BUSY = {"code": "calendar_busy", "message": "try again later", "retryable": True}


def tools(*call_ids: str, round: int = 0) -> dict[str, Any]:
    """Inference asking for tool calls (the reply text is then unused)."""
    calls = [{"id": i, "tool": "check_availability", "arguments": {"day": "mon"}} for i in call_ids]
    return reply(None, tier="L2", source="model", round=round, tool_calls=calls)


@pytest.fixture
def calling(conversation) -> Conversation:
    """An earlier exchange, then a turn whose round 0 asked for two tool calls."""
    receive(conversation, "wamid.0", "hola")
    conversation.compose("wamid.0", reply("Hi!"), "reply-0")
    receive(conversation, "wamid.1", "any slot on monday?")
    conversation.compose("wamid.1", tools("call_a", "call_b"), "reply-1")
    conversation.collect_events()
    return conversation


def test_tool_calls_are_requested_under_keys_that_lead_back_to_the_turn(conversation) -> None:
    receive(conversation, "wamid.1", "any slot on monday?")
    conversation.collect_events()

    assert conversation.compose("wamid.1", tools("call_a", "call_b"), "reply-1") is True

    [requested] = conversation.collect_events()
    assert type(requested).__name__ == "ToolCallsRequested"
    assert (requested.turn_id, requested.round) == ("wamid.1", 0)
    assert requested.calls == [
        {"id": "call_a", "tool": "check_availability", "arguments": {"day": "mon"}, "key": KEY_A},
        {"id": "call_b", "tool": "check_availability", "arguments": {"day": "mon"}, "key": KEY_B},
    ]
    assert requested.env["correlation_id"] == "wamid.1"
    assert list(conversation.open_turns) == ["wamid.1"]
    assert conversation.replies == {}


def test_tool_call_keys_differ_by_turn_round_and_call() -> None:
    keys = {
        tool_call_key(turn, round, call)
        for turn in ("wamid.1", "wamid.2")
        for round in (0, 1)
        for call in ("call_a", "call_b")
    }

    assert len(keys) == 8


@pytest.mark.parametrize("order", [(KEY_A, KEY_B), (KEY_B, KEY_A)], ids=["a-b", "b-a"])
def test_the_last_result_of_a_round_asks_again_with_every_result(calling, order) -> None:
    outcomes = {KEY_A: (SLOTS, None), KEY_B: (None, BUSY)}
    first, last = order

    assert calling.tool_completed(first, *outcomes[first], "done-1") is True
    [completed] = calling.collect_events()
    assert type(completed).__name__ == "ToolCallCompleted"
    assert (completed.turn_id, completed.key) == ("wamid.1", first)
    assert (completed.result, completed.error) == outcomes[first]

    assert calling.tool_completed(last, *outcomes[last], "done-2") is True

    completed, requested = calling.collect_events()
    assert type(completed).__name__ == "ToolCallCompleted"
    assert type(requested).__name__ == "ReplyRequested"
    assert (requested.turn_id, requested.round) == ("wamid.1", 1)
    assert requested.text == "any slot on monday?"
    assert requested.history == [
        {"role": "lead", "text": "hola"},
        {"role": "assistant", "text": "Hi!"},
    ]
    assert sorted(requested.tool_results, key=lambda r: r["call_id"]) == [
        {"call_id": "call_a", "result": SLOTS, "error": None},
        {"call_id": "call_b", "result": None, "error": BUSY},
    ]
    assert (requested.env["correlation_id"], requested.env["causation_id"]) == (
        "wamid.1",
        "done-2",
    )
    assert calling.open_turns["wamid.1"]["round"] == 1


def test_a_redelivered_tool_result_is_ignored(calling) -> None:
    calling.tool_completed(KEY_A, SLOTS, None, "done-1")
    calling.collect_events()

    assert calling.tool_completed(KEY_A, {"slots": []}, None, "done-1-again") is False
    assert calling.collect_events() == []

    calling.tool_completed(KEY_B, SLOTS, None, "done-2")
    calling.collect_events()

    assert calling.tool_completed(KEY_B, SLOTS, None, "done-2-again") is False
    assert calling.tool_completed(KEY_A, SLOTS, None, "done-1-again") is False
    assert calling.collect_events() == []


@pytest.mark.parametrize(
    "key",
    [
        tool_call_key("wamid.1", 0, "call_z"),
        tool_call_key("wamid.1", 1, "call_a"),
        tool_call_key("wamid.9", 0, "call_a"),
        "not-a-key",
    ],
)
def test_a_result_for_a_call_never_requested_is_ignored(calling, key: str) -> None:
    assert calling.tool_completed(key, SLOTS, None, "done-1") is False
    assert calling.collect_events() == []


def test_an_answer_to_an_earlier_round_is_ignored(calling) -> None:
    calling.tool_completed(KEY_A, SLOTS, None, "done-1")
    calling.tool_completed(KEY_B, SLOTS, None, "done-2")
    calling.collect_events()

    assert calling.compose("wamid.1", tools("call_a", "call_b"), "reply-1-again") is False
    assert calling.collect_events() == []

    assert calling.compose("wamid.1", reply("Monday 10:00 is free.", round=1), "reply-2")
    [composed] = calling.collect_events()
    assert type(composed).__name__ == "ReplyComposed"
    assert calling.replies["wamid.1"] == "Monday 10:00 is free."
    assert calling.open_turns == {}


def test_the_third_round_of_tool_calls_ends_in_a_handoff(conversation) -> None:
    receive(conversation, "wamid.1", "book me in")
    for round in range(MAX_TOOL_ROUNDS - 1):
        conversation.compose("wamid.1", tools(f"call_{round}", round=round), f"reply-{round}")
        key = tool_call_key("wamid.1", round, f"call_{round}")
        conversation.tool_completed(key, SLOTS, None, f"done-{round}")
    assert names(conversation).count("ToolCallsRequested") == MAX_TOOL_ROUNDS - 1

    last = tools("call_again", round=MAX_TOOL_ROUNDS - 1)
    assert conversation.compose("wamid.1", last, "reply-last") is True

    composed, handed_off = conversation.collect_events()
    assert type(composed).__name__ == "ReplyComposed"
    assert "tool_calls" not in composed.reply
    assert composed.reply["handoff"] is True
    assert type(handed_off).__name__ == "HandedOff"
    assert handed_off.reason == f"still calling tools after {MAX_TOOL_ROUNDS} rounds"
    assert handed_off.by == "assistant"
    assert conversation.mode == "human"
    assert conversation.open_turns == {}


def test_a_late_tool_result_for_a_superseded_turn_is_ignored(calling) -> None:
    receive(calling, "wamid.2", "actually, tuesday")
    calling.collect_events()

    assert calling.tool_completed(KEY_A, SLOTS, None, "done-1") is False
    assert calling.collect_events() == []
    turn = calling.open_turns["wamid.2"]
    assert (turn["round"], turn["text"]) == (0, "any slot on monday?\nactually, tuesday")


# -- deadlines -----------------------------------------------------------------------------

HOLDING = "Someone from Acme will answer you shortly."


def test_a_deadline_on_an_open_turn_sends_a_holding_reply_and_hands_off(conversation) -> None:
    receive(conversation, "wamid.1")
    conversation.collect_events()

    assert conversation.deadline_passed("wamid.1", HOLDING, "deadline-1") is True

    timed_out, composed, handed_off = events = conversation.collect_events()
    assert type(timed_out).__name__ == "TurnTimedOut"
    assert (timed_out.turn_id, timed_out.round) == ("wamid.1", 0)
    assert type(composed).__name__ == "ReplyComposed"
    assert composed.turn_id == "wamid.1"
    assert (composed.reply["text"], composed.reply["tier"], composed.reply["source"]) == (
        HOLDING,
        "fallback",
        "handoff",
    )
    assert type(handed_off).__name__ == "HandedOff"
    assert (handed_off.reason, handed_off.by) == ("no answer within the deadline", "system")
    assert {(e.env["correlation_id"], e.env["causation_id"]) for e in events} == {
        ("wamid.1", "deadline-1")
    }
    assert conversation.mode == "human"
    assert conversation.open_turns == {}
    assert conversation.replies == {"wamid.1": HOLDING}
    assert conversation.compose("wamid.1", reply("Too late"), "reply-1") is False


def test_a_deadline_during_tool_calls_names_the_round_it_stopped_in(calling) -> None:
    calling.tool_completed(KEY_A, SLOTS, None, "done-1")
    calling.tool_completed(KEY_B, SLOTS, None, "done-2")
    calling.collect_events()

    calling.deadline_passed("wamid.1", HOLDING, "deadline-1")

    timed_out, *_ = calling.collect_events()
    assert (timed_out.turn_id, timed_out.round) == ("wamid.1", 1)


def test_a_deadline_on_an_answered_turn_does_nothing(composed) -> None:
    assert composed.deadline_passed("wamid.1", HOLDING, "deadline-1") is False
    assert composed.collect_events() == []
    assert composed.mode == "bot"
    assert composed.replies == {"wamid.1": "Hi!"}


def test_a_deadline_on_a_superseded_turn_does_nothing(conversation) -> None:
    receive(conversation, "wamid.1")
    receive(conversation, "wamid.2")
    conversation.collect_events()

    assert conversation.deadline_passed("wamid.1", HOLDING, "deadline-1") is False
    assert conversation.collect_events() == []
    assert list(conversation.open_turns) == ["wamid.2"]


# -- delivery statuses ---------------------------------------------------------------------


@pytest.fixture
def sent_reply(composed) -> Conversation:
    """A reply Meta accepted under the wamid ``wamid.out.1``."""
    composed.sent("wamid.1", "wamid.out.1", "sent-1", "wamid.1")
    composed.collect_events()
    return composed


def test_statuses_of_our_reply_are_recorded_as_they_progress(sent_reply) -> None:
    assert sent_reply.delivery_status("wamid.out.1", "delivered", "status-1") is True
    assert sent_reply.delivery_status("wamid.out.1", "read", "status-2") is True

    delivered, read = sent_reply.collect_events()
    assert type(delivered).__name__ == "ReplyStatusChanged"
    assert (delivered.turn_id, delivered.wamid, delivered.status) == (
        "wamid.1",
        "wamid.out.1",
        "delivered",
    )
    assert (read.turn_id, read.status) == ("wamid.1", "read")
    assert sent_reply.outcomes == {"wamid.1": "read"}


def test_a_read_status_may_come_without_delivered(sent_reply) -> None:
    assert sent_reply.delivery_status("wamid.out.1", "read", "status-1") is True
    assert sent_reply.outcomes == {"wamid.1": "read"}


@pytest.mark.parametrize(
    ("first", "late"),
    [
        ("read", "delivered"),
        ("delivered", "delivered"),
        ("read", "read"),
        ("read", "played"),
        ("delivered", "sent"),
    ],
)
def test_a_status_never_moves_backwards(sent_reply, first: str, late: str) -> None:
    sent_reply.delivery_status("wamid.out.1", first, "status-1")
    sent_reply.collect_events()

    assert sent_reply.delivery_status("wamid.out.1", late, "status-2") is False
    assert sent_reply.collect_events() == []
    assert sent_reply.outcomes == {"wamid.1": first}


@pytest.mark.parametrize("status", ["sent", "deleted", "unknown"])
def test_statuses_that_are_no_progress_are_ignored(sent_reply, status: str) -> None:
    assert sent_reply.delivery_status("wamid.out.1", status, "status-1") is False
    assert sent_reply.collect_events() == []


def test_a_status_is_mapped_by_the_wamid_meta_gave_our_reply(sent_reply) -> None:
    assert sent_reply.delivery_status("wamid.1", "delivered", "status-1") is False  # the lead's
    assert sent_reply.delivery_status("wamid.out.other", "read", "status-2") is False
    assert sent_reply.collect_events() == []


def test_a_status_before_our_reply_was_sent_is_ignored(composed) -> None:
    assert composed.delivery_status("wamid.out.1", "delivered", "status-1") is False
    assert composed.collect_events() == []


def test_a_failure_reported_after_delivery_is_ignored(sent_reply) -> None:
    sent_reply.delivery_status("wamid.out.1", "delivered", "status-1")
    sent_reply.collect_events()

    assert sent_reply.failed("wamid.1", "timeout", None, "f-1", "wamid.1") is False
    assert sent_reply.collect_events() == []
    assert sent_reply.mode == "bot"


# -- the 24-hour window --------------------------------------------------------------------


def test_a_closed_window_is_recorded_and_the_conversation_handed_off(composed) -> None:
    assert composed.failed("wamid.1", "re-engagement", 131047, "f-1", "wamid.1") is True

    failed, closed, handed_off = composed.collect_events()
    assert type(failed).__name__ == "ReplyFailed"
    assert type(closed).__name__ == "WindowClosed"
    assert closed.turn_id == "wamid.1"
    assert type(handed_off).__name__ == "HandedOff"
    assert handed_off.reason == "reply could not be sent: re-engagement"
    assert handed_off.by == "system"


def test_after_meta_closed_the_window_only_a_new_message_reopens_it(conversation) -> None:
    receive(conversation, "wamid.1", at=T0)
    conversation.compose("wamid.1", reply("Hi!"), "reply-1")
    conversation.failed("wamid.1", "re-engagement", 131047, "f-1", "wamid.1")

    with pytest.raises(WindowClosedError):
        conversation.human_reply("ana", "Hello!", T0 + timedelta(hours=1), "agent:ana")

    receive(conversation, "wamid.2", "hello?", at=T0 + timedelta(hours=2))
    assert conversation.human_reply("ana", "Hello!", T0 + timedelta(hours=3), "agent:ana")


# -- people --------------------------------------------------------------------------------


@pytest.fixture
def held(conversation) -> Conversation:
    """The lead wrote at T0; Ana took the conversation over before the bot answered."""
    receive(conversation, "wamid.1", "can I talk to someone?", at=T0)
    conversation.take_over("ana", "agent:ana")
    conversation.collect_events()
    return conversation


def test_taking_over_supersedes_the_open_turn_and_hands_off(conversation) -> None:
    receive(conversation, "wamid.1", at=T0)
    conversation.collect_events()

    assert conversation.take_over("ana", "agent:ana") is True

    superseded, handed_off = conversation.collect_events()
    assert type(superseded).__name__ == "TurnSuperseded"
    assert superseded.turn_id == "wamid.1"
    assert type(handed_off).__name__ == "HandedOff"
    assert (handed_off.reason, handed_off.by) == ("taken over by ana", "ana")
    assert conversation.mode == "human"
    assert (conversation.open_turns, conversation.pending) == ({}, [])
    assert conversation.compose("wamid.1", reply(), "reply-1") is False


def test_a_conversation_held_by_a_human_is_not_taken_over_again(held) -> None:
    assert held.take_over("bob", "agent:bob") is False
    assert held.collect_events() == []


def test_while_a_human_holds_it_the_bot_stays_silent(held) -> None:
    assert receive(held, "wamid.2", "hello?", at=T0 + timedelta(minutes=1)) is True
    assert receive(held, "wamid.3", "anyone?", at=T0 + timedelta(minutes=2), debounce=True)
    assert held.flush("burst-1") is False

    assert names(held) == ["MessageReceived", "MessageReceived"]
    assert held.history[-2:] == [
        {"role": "lead", "text": "hello?"},
        {"role": "lead", "text": "anyone?"},
    ]
    assert (held.open_turns, held.pending) == ({}, [])


def test_a_human_replies_inside_the_24_hour_window(held) -> None:
    now = T0 + SERVICE_WINDOW - timedelta(minutes=1)

    turn_id = held.human_reply("ana", "Hi, Ana here!", now, "agent:ana")

    [replied] = held.collect_events()
    assert type(replied).__name__ == "HumanReplied"
    assert (replied.turn_id, replied.text, replied.agent) == (turn_id, "Hi, Ana here!", "ana")
    assert replied.env["correlation_id"] == turn_id
    assert held.replies[turn_id] == "Hi, Ana here!"
    assert held.history[-1] == {"role": "human", "text": "Hi, Ana here!"}
    # The same send path: its outcome and statuses are recorded like the bot's.
    assert held.sent(turn_id, "wamid.out.h", "sent-h", turn_id) is True
    assert held.delivery_status("wamid.out.h", "read", "status-h") is True


def test_every_human_reply_is_its_own_turn(held) -> None:
    now = T0 + timedelta(minutes=5)

    first = held.human_reply("ana", "Hi!", now, "agent:ana")
    second = held.human_reply("ana", "Let me check.", now, "agent:ana")

    assert first != second
    assert held.replies[first] == "Hi!"
    assert held.replies[second] == "Let me check."


@pytest.mark.parametrize(
    "late", [SERVICE_WINDOW, SERVICE_WINDOW + timedelta(hours=1)], ids=["24h", "25h"]
)
def test_a_human_cannot_reply_free_form_outside_the_window(held, late: timedelta) -> None:
    with pytest.raises(WindowClosedError):
        held.human_reply("ana", "Still there?", T0 + late, "agent:ana")

    assert held.collect_events() == []


def test_the_window_runs_from_the_leads_last_message(held) -> None:
    receive(held, "wamid.2", "ok", at=T0 + timedelta(hours=20))

    assert held.human_reply("ana", "Done.", T0 + timedelta(hours=30), "agent:ana")


def test_a_window_without_a_known_message_time_counts_as_closed(conversation) -> None:
    receive(conversation, "wamid.1")  # no timestamp
    conversation.take_over("ana", "agent:ana")

    with pytest.raises(WindowClosedError):
        conversation.human_reply("ana", "Hello!", T0, "agent:ana")


def test_only_a_conversation_a_human_holds_takes_human_replies(conversation) -> None:
    receive(conversation, "wamid.1", at=T0)
    conversation.collect_events()

    with pytest.raises(NotHeldByHumanError):
        conversation.human_reply("ana", "Hi!", T0 + timedelta(minutes=1), "agent:ana")
    assert conversation.release("ana", "agent:ana") is False
    assert conversation.collect_events() == []


def test_releasing_hands_the_conversation_back_to_the_bot(held) -> None:
    receive(held, "wamid.2", "hello?", at=T0 + timedelta(minutes=1))
    held.human_reply("ana", "Hi, Ana here!", T0 + timedelta(minutes=2), "agent:ana")
    held.collect_events()

    assert held.release("ana", "agent:ana") is True

    [resumed] = held.collect_events()
    assert type(resumed).__name__ == "BotResumed"
    assert resumed.agent == "ana"
    assert held.mode == "bot"
    assert held.release("ana", "agent:ana") is False

    receive(held, "wamid.3", "what time do you open?", at=T0 + timedelta(hours=1))

    _, requested = held.collect_events()
    assert type(requested).__name__ == "ReplyRequested"
    # Only the new message is answered; what the human handled is history.
    assert (requested.turn_id, requested.text) == ("wamid.3", "what time do you open?")
    assert requested.history[-1] == {"role": "human", "text": "Hi, Ana here!"}


# -- known bugs (strict: they fail today; fix the code, then drop the mark) ----------------


def test_a_handoff_after_a_failed_send_leaves_no_turn_open(sent_reply) -> None:
    receive(sent_reply, "wamid.2", "and on saturday?")  # a new turn opens

    sent_reply.failed("wamid.1", "recipient unreachable", 131026, "f-1", "wamid.1")

    assert sent_reply.mode == "human"
    assert sent_reply.open_turns == {}
    assert sent_reply.compose("wamid.2", reply("Yes, 9 to 13."), "reply-2") is False


def test_a_status_after_a_failed_send_is_ignored(sent_reply) -> None:
    sent_reply.failed("wamid.1", "recipient unreachable", 131026, "f-1", "wamid.1")
    sent_reply.collect_events()

    assert sent_reply.delivery_status("wamid.out.1", "sent", "status-1") is False


def test_a_request_history_never_repeats_the_messages_it_answers_reaction(conversation) -> None:
    receive(conversation, "wamid.1", "open on sunday?")
    receive(conversation, "wamid.r", None, kind="reaction")
    receive(conversation, "wamid.2", "and saturday?")

    *_, requested = conversation.collect_events()
    assert requested.text == "open on sunday?\nand saturday?"
    assert {"role": "lead", "text": "open on sunday?"} not in requested.history


def test_a_request_history_never_repeats_the_messages_it_answers_burst(conversation) -> None:
    receive(conversation, "wamid.1", "hola", debounce=True)
    conversation.flush("burst-1")
    receive(conversation, "wamid.2", "price of a haircut?", debounce=True)
    conversation.compose("wamid.1", reply("Hi!"), "reply-1")
    conversation.flush("burst-2")

    *_, requested = conversation.collect_events()
    assert requested.text == "price of a haircut?"
    assert requested.history == [
        {"role": "lead", "text": "hola"},
        {"role": "assistant", "text": "Hi!"},
    ]


def test_an_older_message_delivered_late_does_not_shrink_the_window(conversation) -> None:
    receive(conversation, "wamid.2", "second", at=T0 + timedelta(hours=1))
    receive(conversation, "wamid.1", "first", at=T0)  # Meta does not promise order
    conversation.take_over("ana", "agent:ana")

    now = T0 + SERVICE_WINDOW + timedelta(minutes=30)  # within 24 h of "second"
    assert conversation.human_reply("ana", "Hi!", now, "agent:ana")


def test_the_handoff_after_too_many_tool_rounds_tells_the_lead(conversation) -> None:
    receive(conversation, "wamid.1", "book me in")
    for round in range(MAX_TOOL_ROUNDS - 1):
        conversation.compose("wamid.1", tools(f"call_{round}", round=round), f"reply-{round}")
        key = tool_call_key("wamid.1", round, f"call_{round}")
        conversation.tool_completed(key, SLOTS, None, f"done-{round}")
    conversation.compose(
        "wamid.1", tools("call_x", round=MAX_TOOL_ROUNDS - 1), "reply-last", "One moment please."
    )

    composed = next(e for e in conversation.collect_events() if type(e).__name__ == "ReplyComposed")
    assert composed.reply["text"] == "One moment please."


# -- finished turns (the lead's memory) ----------------------------------------------------


def finished(conversation: Conversation) -> list[tuple[str, str, str, str]]:
    return [
        (e.turn_id, e.lead_text, e.reply_text, e.by)
        for e in conversation.collect_events()
        if type(e).__name__ == "TurnFinished"
    ]


def test_a_turn_finishes_when_its_reply_reached_the_lead(conversation) -> None:
    receive(conversation, "wamid.1", "do you open on sundays?", debounce=True)
    receive(conversation, "wamid.2", "and on holidays?", debounce=True)
    conversation.flush("burst-1")
    conversation.compose("wamid.2", reply("Sundays 10 to 14, holidays closed."), "reply-1")
    assert finished(conversation) == []  # composed is not yet received

    conversation.sent("wamid.2", "wamid.out.1", "sent-1", "wamid.2")

    assert finished(conversation) == [
        (
            "wamid.2",
            "do you open on sundays?\nand on holidays?",
            "Sundays 10 to 14, holidays closed.",
            "assistant",
        )
    ]
    assert conversation.unfinished == {}
    conversation.sent("wamid.2", "wamid.out.1", "sent-1", "wamid.2")
    assert finished(conversation) == []  # once


def test_a_reply_that_failed_is_never_remembered(composed) -> None:
    composed.failed("wamid.1", "unreachable", 131026, "failed-1", "wamid.1")
    composed.sent("wamid.1", "wamid.out.1", "sent-1", "wamid.1")

    assert finished(composed) == []
    assert composed.unfinished == {}


def test_a_silent_turn_and_a_payments_thanks_finish_no_turn(conversation) -> None:
    receive(conversation, "wamid.1", at=datetime.now(UTC))
    conversation.compose("wamid.1", reply(None, tier="L0", source="silence"), "reply-1")
    conversation.payment_received("cs_1", 1500, "eur", "Thanks!", datetime.now(UTC), "pay-1")
    conversation.sent("payment-cs_1", "wamid.out.1", "sent-1", "payment:cs_1")

    assert finished(conversation) == []


def test_a_human_reply_finishes_the_turn_of_what_the_lead_wrote_since(conversation) -> None:
    now = datetime.now(UTC)
    receive(conversation, "wamid.1", "hi", at=now)
    conversation.compose("wamid.1", reply("Hello!"), "reply-1")
    conversation.take_over("ana", "agent:ana")
    receive(conversation, "wamid.2", "I want a refund", at=now)
    receive(conversation, "wamid.3", "for order 42", at=now)
    turn_id = conversation.human_reply("ana", "Refund done.", now, "agent:ana")
    conversation.collect_events()

    conversation.sent(turn_id, "wamid.out.h", "sent-h", turn_id)

    assert finished(conversation) == [
        (turn_id, "I want a refund\nfor order 42", "Refund done.", "ana")
    ]


# -- the 24-hour window, the bot's side ----------------------------------------------------

TEMPLATE = {"name": "reply_ready", "language": "es_ES", "components": []}


@pytest.fixture
def late(conversation) -> Conversation:
    """A turn whose answer comes 25 hours after the lead wrote (a long tool round, a timer)."""
    receive(conversation, "wamid.1", "can you book me?", at=datetime.now(UTC) - timedelta(hours=25))
    conversation.collect_events()
    return conversation


def test_a_reply_after_the_window_becomes_the_tenants_template(late) -> None:
    assert late.compose(
        "wamid.1", reply("Booked!"), "reply-1", now=datetime.now(UTC), template=TEMPLATE
    )

    composed, closed, template = late.collect_events()
    assert (type(composed).__name__, composed.reply["withheld"]) == (
        "ReplyComposed",
        "window_closed",
    )
    assert composed.reply["text"] == "Booked!"  # kept for whoever reads the timeline
    assert type(closed).__name__ == "WindowClosed"
    assert (type(template).__name__, template.template) == ("TemplateSent", TEMPLATE)
    assert late.mode == "bot"
    assert late.replies == {"wamid.1": "[template reply_ready]"}
    assert "Booked!" not in [h["text"] for h in late.history]  # the lead never saw it


def test_a_reply_after_the_window_without_a_template_hands_off(late) -> None:
    late.compose("wamid.1", reply("Booked!"), "reply-1", now=datetime.now(UTC))

    assert names(late) == ["ReplyComposed", "WindowClosed", "HandedOff"]
    assert late.mode == "human" and late.replies == {}


def test_a_handoff_reply_after_the_window_hands_off_once(late) -> None:
    late.compose("wamid.1", handoff(), "reply-1", now=datetime.now(UTC), template=TEMPLATE)

    assert names(late) == ["ReplyComposed", "WindowClosed", "TemplateSent", "HandedOff"]


def test_a_reply_inside_the_window_is_sent_as_composed(conversation) -> None:
    receive(conversation, "wamid.1", at=datetime.now(UTC) - timedelta(hours=23))
    conversation.collect_events()

    conversation.compose("wamid.1", reply("Hi!"), "r", now=datetime.now(UTC), template=TEMPLATE)

    [composed] = conversation.collect_events()
    assert "withheld" not in composed.reply and conversation.replies == {"wamid.1": "Hi!"}


def test_a_holding_reply_after_the_window_becomes_the_template(late) -> None:
    late.deadline_passed("wamid.1", "One moment", "d", now=datetime.now(UTC), template=TEMPLATE)

    assert names(late) == [
        "TurnTimedOut",
        "ReplyComposed",
        "WindowClosed",
        "TemplateSent",
        "HandedOff",
    ]


def test_a_template_turn_finishes_with_the_leads_words_and_no_reply_text(late) -> None:
    late.compose("wamid.1", reply("Booked!"), "reply-1", now=datetime.now(UTC), template=TEMPLATE)
    late.sent("wamid.1", "wamid.out.1", "sent-1", "wamid.1")

    assert finished(late) == [("wamid.1", "can you book me?", "", "assistant")]


def test_a_payment_after_the_window_is_thanked_by_template_or_not_at_all(late) -> None:
    now = datetime.now(UTC)
    late.payment_received("cs_1", 1500, "eur", "Thanks!", now, "pay-1")
    assert names(late) == ["PaymentConfirmed"]  # no template: nothing a person must do

    late.payment_received("cs_2", 1500, "eur", "Thanks!", now, "pay-2", TEMPLATE)
    assert names(late) == ["PaymentConfirmed", "ReplyComposed", "WindowClosed", "TemplateSent"]
    assert late.mode == "bot"


def test_a_snapshot_from_before_unfinished_existed_is_upcast() -> None:
    state: dict[str, Any] = {"mode": "bot"}
    Conversation.upcast_v1_v2(state)
    assert state == {"mode": "bot", "payments": {}, "unfinished": {}}
