"""The relay's pure translation of stored domain events into public messages and commands."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskpilot.contracts import conversation as public
from taskpilot.contracts.inference import GenerateReply, ToolCall, ToolResult, Turn
from taskpilot.contracts.tools import ExecuteToolCall
from taskpilot.contracts.whatsapp import MarkMessageRead, SendWhatsAppMessage
from taskpilot.conversation.domain import Conversation, tool_call_key
from taskpilot.conversation.relay import TimerChange, outgoing, timers_for
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


def messages(event: Any) -> list[Any]:
    """The messages only (typed Any: each test knows which Message subclass it expects)."""
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
        "TurnFinished",
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


def test_a_reply_request_becomes_a_public_event_a_mark_read_and_a_generate_command(events):
    event = the(events, "ReplyRequested")

    [requested, mark_read, command] = messages(event)

    assert isinstance(requested, public.ReplyRequested)
    assert (requested.turn_id, requested.text) == ("wamid.1", "how much is a haircut?")
    assert isinstance(mark_read, MarkMessageRead)
    assert isinstance(command, GenerateReply)
    assert command.tenant_id == TENANT
    assert command.lead == LEAD
    assert command.conversation_id == str(event.originator_id)
    assert command.correlation_id == "wamid.1"
    assert command.causation_id == str(requested.event_id)
    assert (command.turn_id, command.text) == ("wamid.1", "how much is a haircut?")


def test_the_generate_command_carries_the_history(events) -> None:
    event = the(events, "ReplyRequested", nth=1)

    _, _, command = messages(event)

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

    assert [msg_id for _, msg_id in outgoing(event)] == [
        f"{base}:event",
        f"{base}:mark_read",
        f"{base}:command",
    ]


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

    # The lead is in the subject so erasure can purge one lead's events from the stream.
    assert subjects == {
        f"conversation.acme.{LEAD}.lead_message_received",
        f"conversation.acme.{LEAD}.reply_requested",
        f"conversation.acme.{LEAD}.reply_composed",
        f"conversation.acme.{LEAD}.reply_sent",
        f"conversation.acme.{LEAD}.turn_finished",
        f"conversation.acme.{LEAD}.reply_failed",
        f"conversation.acme.{LEAD}.handed_off",
        "inference.acme.generate_reply",
        "wa.out.acme.mark_read",
        "wa.out.acme.send",
    }


# -- the orchestration: superseded turns, tool rounds, statuses, deadlines, people ---------

T0 = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
HOLDING = "Someone from Acme will answer you shortly."
BUSY = {"code": "calendar_busy", "message": "try again later", "retryable": True}
KEY_A = tool_call_key("wamid.2", 0, "call_a")
KEY_B = tool_call_key("wamid.2", 0, "call_b")
CALLS = [
    {"id": "call_a", "tool": "check_availability", "arguments": {"day": "mon"}},
    {"id": "call_b", "tool": "get_price", "arguments": {"service": "haircut"}},
]


def scenario() -> Conversation:
    c = Conversation(TENANT, LEAD, NUMBER)
    c.receive("wamid.1", "text", "a haircut", "Ana", "in-1", at=T0)
    c.receive("wamid.2", "text", "on monday?", "Ana", "in-2", at=T0)  # supersedes wamid.1
    c.compose("wamid.2", reply(None, source="model", citations=[], tool_calls=CALLS), "gen-1")
    c.tool_completed(KEY_B, {"price_eur": 15}, None, "done-b")
    c.tool_completed(KEY_A, None, BUSY, "done-a")
    c.compose("wamid.2", reply("Monday is full; 15 EUR.", round=1), "gen-2")
    c.sent("wamid.2", "wamid.out.2", "sent-2", "wamid.2")
    c.delivery_status("wamid.out.2", "delivered", "status-1")
    c.delivery_status("wamid.out.2", "read", "status-2")
    c.receive("wamid.3", "text", "tuesday then?", "Ana", "in-3", at=T0)
    c.deadline_passed("wamid.3", HOLDING, "deadline:wamid.3")
    c.failed("wamid.3", "re-engagement window closed", 131047, "failed-3", "wamid.3")
    c.release("ana", "agent:ana")
    c.receive("wamid.4", "text", "hello?", "Ana", "in-4", at=T0 + timedelta(hours=1))
    c.take_over("ana", "agent:ana")
    c.receive("wamid.5", "text", "are you there?", "Ana", "in-5", at=T0 + timedelta(hours=2))
    c.human_reply("ana", "Booked you for Tuesday 10:00.", T0 + timedelta(hours=3), "agent:ana")
    c.release("ana", "agent:ana")
    return c


@pytest.fixture(scope="module")
def orchestration() -> list[Any]:
    """A second conversation's stored events, through every step a turn can take."""
    app = Conversations(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.save(scenario())
    return stored_events(app)


def test_the_orchestration_history_is_what_the_scenario_did(orchestration) -> None:
    assert [type(e).__name__ for e in orchestration] == [
        "Started",
        "MessageReceived",
        "ReplyRequested",
        "MessageReceived",
        "TurnSuperseded",
        "ReplyRequested",
        "ToolCallsRequested",
        "ToolCallCompleted",
        "ToolCallCompleted",
        "ReplyRequested",
        "ReplyComposed",
        "ReplySent",
        "TurnFinished",
        "ReplyStatusChanged",
        "ReplyStatusChanged",
        "MessageReceived",
        "ReplyRequested",
        "TurnTimedOut",
        "ReplyComposed",
        "HandedOff",
        "ReplyFailed",
        "WindowClosed",
        "BotResumed",
        "MessageReceived",
        "ReplyRequested",
        "TurnSuperseded",
        "HandedOff",
        "MessageReceived",
        "HumanReplied",
        "BotResumed",
    ]


def test_a_superseded_turn_is_published_and_the_next_request_answers_both(orchestration):
    [superseded] = messages(the(orchestration, "TurnSuperseded"))
    _, _, command = messages(the(orchestration, "ReplyRequested", nth=1))

    assert isinstance(superseded, public.TurnSuperseded)
    assert superseded.turn_id == "wamid.1"
    assert superseded.subject() == f"conversation.acme.{LEAD}.turn_superseded"
    assert (command.turn_id, command.text, command.round) == ("wamid.2", "a haircut\non monday?", 0)
    assert command.tool_results == []


def test_tool_calls_become_a_public_event_and_one_command_per_call(orchestration) -> None:
    event = the(orchestration, "ToolCallsRequested")
    base = f"{event.originator_id}:{event.originator_version}"

    pairs = list(outgoing(event))
    [requested, run_a, run_b] = [m for m, _ in pairs]

    assert isinstance(requested, public.ToolCallsRequested)
    assert (requested.turn_id, requested.round) == ("wamid.2", 0)
    assert requested.calls == [ToolCall.model_validate(c) for c in CALLS]
    for run, key, call in ((run_a, KEY_A, CALLS[0]), (run_b, KEY_B, CALLS[1])):
        assert isinstance(run, ExecuteToolCall)
        assert run.tool_call_id == key
        assert (run.tool, run.arguments) == (call["tool"], call["arguments"])
        assert run.conversation_id == str(event.originator_id)
        assert run.correlation_id == "wamid.2"
        assert run.causation_id == str(requested.event_id)
        assert run.subject() == "tools.acme.execute"
    assert [msg_id for _, msg_id in pairs] == [
        f"{base}:event",
        f"{base}:tool:{KEY_A}",
        f"{base}:tool:{KEY_B}",
    ]


def test_a_tool_result_is_recorded_publicly_under_its_key(orchestration) -> None:
    [recorded] = messages(the(orchestration, "ToolCallCompleted"))

    assert isinstance(recorded, public.ToolResultRecorded)
    assert recorded.turn_id == "wamid.2"
    assert recorded.result == ToolResult(call_id=KEY_B, result={"price_eur": 15})


def test_the_next_round_asks_inference_with_the_results_under_the_models_ids(orchestration):
    [requested, command] = messages(the(orchestration, "ReplyRequested", nth=2))
    _, _, first_round = messages(the(orchestration, "ReplyRequested", nth=1))

    assert isinstance(requested, public.ReplyRequested)
    assert (requested.turn_id, requested.round) == ("wamid.2", 1)
    assert isinstance(command, GenerateReply)
    assert (command.turn_id, command.round, command.text) == ("wamid.2", 1, first_round.text)
    assert command.history == first_round.history
    assert command.correlation_id == "wamid.2"
    assert sorted(command.tool_results, key=lambda r: r.call_id) == [
        ToolResult(call_id="call_a", error=BUSY),
        ToolResult(call_id="call_b", result={"price_eur": 15}),
    ]


def test_a_new_turn_marks_the_leads_message_read_with_typing_but_a_tool_round_does_not(
    orchestration,
) -> None:
    new_turn = the(orchestration, "ReplyRequested", nth=1)
    tool_round = the(orchestration, "ReplyRequested", nth=2)
    base = f"{new_turn.originator_id}:{new_turn.originator_version}"

    pairs = list(outgoing(new_turn))
    [requested, mark_read, _] = [m for m, _ in pairs]

    assert new_turn.round == 0
    assert isinstance(mark_read, MarkMessageRead)
    assert mark_read.wamid == new_turn.turn_id == "wamid.2"
    assert mark_read.phone_number_id == new_turn.env["phone_number_id"] == NUMBER
    assert mark_read.typing is True
    assert mark_read.tenant_id == TENANT
    assert mark_read.correlation_id == "wamid.2"
    assert mark_read.causation_id == str(requested.event_id)
    assert mark_read.subject() == "wa.out.acme.mark_read"
    assert pairs[1][1] == f"{base}:mark_read"
    assert [(m.event_id, i) for m, i in outgoing(new_turn)] == [(m.event_id, i) for m, i in pairs]
    assert tool_round.round == 1
    assert not [m for m in messages(tool_round) if isinstance(m, MarkMessageRead)]
    rounds = [e.round for e in orchestration if type(e).__name__ == "ReplyRequested"]
    marks = [m for e in orchestration for m in messages(e) if isinstance(m, MarkMessageRead)]
    assert len(marks) == rounds.count(0)


def test_the_answer_after_tool_calls_is_sent(orchestration) -> None:
    [composed, send] = messages(the(orchestration, "ReplyComposed"))

    assert (composed.turn_id, composed.text) == ("wamid.2", "Monday is full; 15 EUR.")
    assert (send.text, send.reference) == ("Monday is full; 15 EUR.", "wamid.2")


def test_status_changes_become_public_events(orchestration) -> None:
    delivered, read = (messages(the(orchestration, "ReplyStatusChanged", nth=n)) for n in (0, 1))

    assert [(m.turn_id, m.wamid, m.status) for m in (*delivered, *read)] == [
        ("wamid.2", "wamid.out.2", "delivered"),
        ("wamid.2", "wamid.out.2", "read"),
    ]
    assert all(isinstance(m, public.ReplyStatusChanged) for m in (*delivered, *read))


def test_a_timed_out_turn_publishes_the_timeout_sends_the_holding_reply_and_hands_off(
    orchestration,
) -> None:
    [timed_out] = messages(the(orchestration, "TurnTimedOut"))
    [composed, send] = messages(the(orchestration, "ReplyComposed", nth=1))
    [handed_off] = messages(the(orchestration, "HandedOff"))

    assert isinstance(timed_out, public.TurnTimedOut)
    assert (timed_out.turn_id, timed_out.round) == ("wamid.3", 0)
    assert (composed.text, composed.tier, composed.source) == (HOLDING, "fallback", "handoff")
    assert isinstance(send, SendWhatsAppMessage)
    assert (send.text, send.reference, send.to) == (HOLDING, "wamid.3", LEAD)
    assert (handed_off.reason, handed_off.by) == ("no answer within the deadline", "system")


def test_a_closed_window_is_published(orchestration) -> None:
    [failed] = messages(the(orchestration, "ReplyFailed"))
    [closed] = messages(the(orchestration, "WindowClosed"))

    assert (failed.turn_id, failed.code) == ("wamid.3", 131047)
    assert isinstance(closed, public.WindowClosed)
    assert closed.turn_id == "wamid.3"
    assert closed.subject() == f"conversation.acme.{LEAD}.window_closed"


def test_a_take_over_and_a_release_are_published(orchestration) -> None:
    [superseded] = messages(the(orchestration, "TurnSuperseded", nth=1))
    [taken] = messages(the(orchestration, "HandedOff", nth=1))
    [resumed] = messages(the(orchestration, "BotResumed", nth=1))

    assert superseded.turn_id == "wamid.4"
    assert (taken.reason, taken.by) == ("taken over by ana", "ana")
    assert isinstance(resumed, public.BotResumed)
    assert resumed.agent == "ana"


def test_a_message_while_a_human_holds_the_conversation_asks_for_nothing(orchestration):
    [received] = messages(the(orchestration, "MessageReceived", nth=4))

    assert isinstance(received, public.LeadMessageReceived)
    assert received.text == "are you there?"


def test_a_human_reply_is_published_and_sent_through_the_same_path(orchestration) -> None:
    event = the(orchestration, "HumanReplied")

    [replied, send] = messages(event)

    assert isinstance(replied, public.HumanReplied)
    assert (replied.text, replied.agent) == ("Booked you for Tuesday 10:00.", "ana")
    assert isinstance(send, SendWhatsAppMessage)
    assert (send.text, send.to, send.phone_number_id) == (replied.text, LEAD, NUMBER)
    assert send.reference == replied.turn_id == event.turn_id
    assert send.causation_id == str(replied.event_id)
    assert send.correlation_id == replied.turn_id


def test_every_orchestration_message_has_its_own_ids_and_survives_the_wire(orchestration):
    published = [pair for event in orchestration for pair in outgoing(event)]

    assert len({m.event_id for m, _ in published}) == len(published)
    assert len({msg_id for _, msg_id in published}) == len(published)
    for message, _ in published:
        assert type(message).from_bytes(message.to_bytes()) == message


def test_the_orchestration_publishes_to_these_subjects(orchestration) -> None:
    subjects = {m.subject() for e in orchestration for m in messages(e)}

    events = {s.removeprefix(f"conversation.acme.{LEAD}.") for s in subjects}
    assert events == {
        "lead_message_received",
        "reply_requested",
        "turn_superseded",
        "tool_calls_requested",
        "tool_result_recorded",
        "reply_composed",
        "reply_sent",
        "turn_finished",
        "reply_status_changed",
        "turn_timed_out",
        "handed_off",
        "reply_failed",
        "window_closed",
        "bot_resumed",
        "human_replied",
        "inference.acme.generate_reply",
        "tools.acme.execute",
        "wa.out.acme.mark_read",
        "wa.out.acme.send",
    }


# -- timers --------------------------------------------------------------------------------

DEADLINE = timedelta(seconds=30)
BURST = timedelta(seconds=2)


def armed(events: Sequence[Any], burst: timedelta = BURST) -> dict[tuple[str, str], datetime]:
    """The timers left armed after applying every change of the events, in order."""
    table: dict[tuple[str, str], datetime] = {}
    for event in events:
        for change in timers_for(event, DEADLINE, burst):
            if change.due is None:
                table.pop((change.kind, change.key), None)
            else:
                table[(change.kind, change.key)] = change.due
    return table


def test_a_reply_request_ends_the_burst_and_arms_the_turns_deadline(orchestration) -> None:
    event = the(orchestration, "ReplyRequested")

    assert timers_for(event, DEADLINE, BURST) == [
        TimerChange("burst", "", None),
        TimerChange("turn", "wamid.1", event.timestamp + DEADLINE),
    ]


def test_a_message_awaiting_a_reply_arms_the_burst_timer(orchestration) -> None:
    event = the(orchestration, "MessageReceived")

    assert timers_for(event, DEADLINE, BURST) == [TimerChange("burst", "", event.timestamp + BURST)]
    assert timers_for(event, DEADLINE, timedelta(0)) == []  # no burst window configured


def test_a_message_the_bot_will_not_answer_arms_nothing(orchestration) -> None:
    held = the(orchestration, "MessageReceived", nth=4)  # while a human holds it

    assert held.awaits_reply is False
    assert timers_for(held, DEADLINE, BURST) == []


@pytest.mark.parametrize(("name", "nth"), [("ReplyComposed", 0), ("TurnSuperseded", 0)])
def test_a_closed_or_superseded_turn_disarms_its_deadline(orchestration, name, nth) -> None:
    event = the(orchestration, name, nth)

    assert timers_for(event, DEADLINE, BURST) == [TimerChange("turn", event.turn_id, None)]


def test_a_handoff_disarms_the_burst(orchestration) -> None:
    event = the(orchestration, "HandedOff")

    assert timers_for(event, DEADLINE, BURST) == [TimerChange("burst", "", None)]


@pytest.mark.parametrize(
    "name",
    [
        "Started",
        "ToolCallsRequested",
        "ToolCallCompleted",
        "TurnTimedOut",
        "ReplySent",
        "ReplyStatusChanged",
        "ReplyFailed",
        "WindowClosed",
        "HumanReplied",
        "BotResumed",
    ],
)
def test_other_events_touch_no_timer(orchestration, name: str) -> None:
    assert timers_for(the(orchestration, name), DEADLINE, BURST) == []


def test_after_the_whole_orchestration_no_timer_is_left_armed(orchestration) -> None:
    assert armed(orchestration) == {}


def test_a_burst_keeps_one_timer_until_its_turn_then_the_deadline_until_the_answer() -> None:
    c = Conversation(TENANT, LEAD, NUMBER)
    c.receive("wamid.1", "text", "hi", "Ana", "in-1", debounce=True)
    c.receive("wamid.2", "text", "a haircut?", "Ana", "in-2", debounce=True)
    burst = c.collect_events()
    assert armed(burst) == {("burst", ""): burst[-1].timestamp + BURST}

    c.flush("burst-1")
    [requested] = c.collect_events()
    assert armed([*burst, requested]) == {("turn", "wamid.2"): requested.timestamp + DEADLINE}

    c.compose("wamid.2", reply("15 EUR."), "gen-1")
    assert armed([*burst, requested, *c.collect_events()]) == {}


def test_each_tool_round_pushes_the_turns_deadline(orchestration) -> None:
    round_1 = the(orchestration, "ReplyRequested", nth=2)
    up_to_round_1 = orchestration[: orchestration.index(round_1) + 1]

    assert armed(up_to_round_1) == {("turn", "wamid.2"): up_to_round_1[-1].timestamp + DEADLINE}


def test_a_message_debounced_while_tools_run_keeps_its_burst_timer() -> None:
    c = Conversation(TENANT, LEAD, NUMBER)
    c.receive("wamid.1", "text", "a slot on monday?", "Ana", "in-1", debounce=True)
    c.flush("burst-1")
    c.compose("wamid.1", reply(None, source="model", tool_calls=CALLS[:1]), "gen-1")
    c.receive("wamid.2", "text", "or tuesday", "Ana", "in-2", debounce=True)  # arms the burst
    c.tool_completed(tool_call_key("wamid.1", 0, "call_a"), {"slots": []}, None, "done-a")

    events = c.collect_events()
    assert [type(e).__name__ for e in events][-2:] == ["ToolCallCompleted", "ReplyRequested"]
    assert c.pending  # wamid.2 waits for its burst to end
    assert ("burst", "") in armed(events)


# -- finished turns and the 24-hour window -------------------------------------------------


def test_a_finished_turn_is_published_for_the_leads_memory(events) -> None:
    [turn] = messages(the(events, "TurnFinished"))

    assert isinstance(turn, public.TurnFinished)
    assert (turn.turn_id, turn.lead_text, turn.reply_text, turn.by) == (
        "wamid.1",
        "how much is a haircut?",
        "A haircut is 15 EUR.",
        "assistant",
    )
    assert turn.subject() == f"conversation.acme.{LEAD}.turn_finished"


TEMPLATE = {"name": "reply_ready", "language": "es_ES", "components": []}


@pytest.fixture(scope="module")
def late() -> list[Any]:
    """A reply composed 25 hours after the lead wrote, in a tenant with a template."""
    app = Conversations(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    now = datetime.now(UTC)
    c = Conversation(TENANT, LEAD, NUMBER)
    c.receive("wamid.1", "text", "book me", "Ana", "in-1", at=now - timedelta(hours=25))
    c.compose("wamid.1", reply("Booked!"), "gen-1", now=now, template=TEMPLATE)
    app.save(c)
    return stored_events(app)


def test_a_withheld_reply_is_published_but_never_sent(late) -> None:
    [composed] = messages(the(late, "ReplyComposed"))

    assert isinstance(composed, public.ReplyComposed)
    assert (composed.text, composed.withheld) == ("Booked!", "window_closed")


def test_a_template_turn_sends_the_template_instead(late) -> None:
    [closed] = messages(the(late, "WindowClosed"))
    [event, send] = messages(the(late, "TemplateSent"))

    assert isinstance(closed, public.WindowClosed)
    assert isinstance(event, public.TemplateSent)
    assert (event.turn_id, event.template, event.language) == ("wamid.1", "reply_ready", "es_ES")
    assert isinstance(send, SendWhatsAppMessage)
    assert send.text is None and send.template is not None
    assert send.template.model_dump() == TEMPLATE
    assert (send.to, send.reference, send.causation_id) == (LEAD, "wamid.1", str(event.event_id))
    assert type(send).from_bytes(send.to_bytes()) == send
