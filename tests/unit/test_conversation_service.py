"""Conversation use cases (load, decide, save) on eventsourcing's in-memory persistence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskpilot.contracts.inference import ReplyGenerated, ToolCall
from taskpilot.contracts.tools import ToolCallCompleted, ToolError
from taskpilot.contracts.whatsapp import (
    MediaContent,
    TextContent,
    WhatsAppMessageReceived,
    WhatsAppMessageSent,
    WhatsAppSendFailed,
    WhatsAppStatusReceived,
)
from taskpilot.conversation.domain import (
    MAX_TOOL_ROUNDS,
    Conversation,
    NotHeldByHumanError,
    WindowClosedError,
    conversation_id,
    tool_call_key,
)
from taskpilot.conversation.service import (
    ConversationNotFoundError,
    Conversations,
    content_text,
)

TENANT, LEAD, NUMBER = "acme", "34600111222", "pn-1"
CONVERSATION = str(conversation_id(TENANT, LEAD))
ID = conversation_id(TENANT, LEAD)
LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def app() -> Conversations:
    return Conversations(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def inbound(
    wamid: str,
    body: str = "hola",
    tenant: str = TENANT,
    at: datetime | None = None,
) -> WhatsAppMessageReceived:
    """A lead's message, written ``at`` (default: just now, inside the 24-hour window)."""
    return WhatsAppMessageReceived(
        tenant_id=tenant,
        correlation_id=wamid,
        wamid=wamid,
        phone_number_id=NUMBER,
        lead=LEAD,
        lead_name="Ana",
        wa_timestamp=at or datetime.now(UTC),
        content=TextContent(body=body),
    )


def generated(turn_id: str, text: str | None = "Hi!", **fields) -> ReplyGenerated:
    return ReplyGenerated(
        tenant_id=TENANT,
        correlation_id=turn_id,
        conversation_id=CONVERSATION,
        turn_id=turn_id,
        text=text,
        tier="L1",
        source="template",
        **fields,
    )


def stored(app: Conversations) -> list[str]:
    return [n.topic.rsplit(".", 1)[-1] for n in app.recorder.select_notifications(1, 1000)]


def test_the_first_message_starts_the_conversation_and_requests_a_reply(app) -> None:
    assert app.receive(inbound("wamid.1")) is True

    assert stored(app) == ["Started", "MessageReceived", "ReplyRequested"]
    assert list(app.get(TENANT, CONVERSATION).open_turns) == ["wamid.1"]


def test_a_redelivered_message_saves_nothing(app) -> None:
    app.receive(inbound("wamid.1"))

    assert app.receive(inbound("wamid.1")) is False
    assert len(stored(app)) == 3


def test_a_redelivered_message_is_recognised_among_many_later_ones(app) -> None:
    # Every use case reloads the aggregate from its stored events.
    app.receive(inbound("wamid.1"))
    for n in range(20):
        app.receive(inbound(f"wamid.later.{n}"))

    assert app.receive(inbound("wamid.1")) is False
    # The first message: received + requested; each later one also supersedes the open turn.
    assert app.get(TENANT, CONVERSATION).version == 1 + 2 + 3 * 20


def test_a_long_conversation_keeps_recognising_redeliveries(app) -> None:
    for n in range(60):  # Started, then 3 events per message (received, superseded, requested)
        assert app.receive(inbound(f"wamid.{n}")) is True

    assert app.receive(inbound("wamid.0")) is False  # its wamid was seen before the snapshot
    assert [s.originator_version for s in app.snapshots.get(ID)] == [100]
    assert app.get(TENANT, CONVERSATION).version == 1 + 2 + 3 * 59


def test_saving_calls_on_saved_so_the_relay_wakes_up(app) -> None:
    saves: list[int] = []
    app.on_saved = lambda: saves.append(1)

    app.receive(inbound("wamid.1"))
    app.receive(inbound("wamid.1"))

    assert saves == [1]


def test_a_generated_reply_is_composed_once(app) -> None:
    app.receive(inbound("wamid.1"))

    assert app.compose(generated("wamid.1", "Hi!", confidence=0.97)) is True
    assert app.compose(generated("wamid.1", "Hi!")) is False
    assert stored(app)[-1] == "ReplyComposed"
    assert app.get(TENANT, CONVERSATION).replies == {"wamid.1": "Hi!"}


def test_a_reply_for_an_unknown_conversation_is_an_error(app) -> None:
    with pytest.raises(ConversationNotFoundError):
        app.compose(generated("wamid.1"))


def test_send_outcomes_are_recorded(app) -> None:
    app.receive(inbound("wamid.1"))
    app.compose(generated("wamid.1"))
    sent = WhatsAppMessageSent(
        tenant_id=TENANT,
        correlation_id="wamid.1",
        conversation_id=CONVERSATION,
        command_id="c-1",
        wamid="wamid.out.1",
        to=LEAD,
        reference="wamid.1",
    )

    assert app.sent(sent) is True
    assert app.sent(sent) is False
    assert stored(app)[-2:] == ["ReplySent", "TurnFinished"]
    [finished] = data_of(app, "TurnFinished")
    assert (finished["lead_text"], finished["reply_text"]) == ("hola", "Hi!")


def test_a_send_failure_hands_the_conversation_off(app) -> None:
    app.receive(inbound("wamid.1"))
    app.compose(generated("wamid.1"))

    failure = WhatsAppSendFailed(
        tenant_id=TENANT,
        correlation_id="wamid.1",
        conversation_id=CONVERSATION,
        command_id="c-1",
        to=LEAD,
        code=131047,
        reason="re-engagement window closed",
        reference="wamid.1",
    )

    assert app.failed(failure) is True
    # 131047 is Meta's "24-hour window closed": recorded as such before the handoff.
    assert stored(app)[-3:] == ["ReplyFailed", "WindowClosed", "HandedOff"]
    assert app.get(TENANT, CONVERSATION).mode == "human"


def test_a_conversation_is_not_visible_to_another_tenant(app) -> None:
    app.receive(inbound("wamid.1"))

    with pytest.raises(ConversationNotFoundError):
        app.get("globex", CONVERSATION)
    with pytest.raises(ConversationNotFoundError):
        app.get(TENANT, "not-a-uuid")


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (TextContent(body="hola"), "hola"),
        (MediaContent(kind="image", media_id="m1", caption="this one"), "this one"),
        (MediaContent(kind="audio", media_id="m1"), None),
    ],
)
def test_content_text_takes_the_first_text_the_content_has(content, text) -> None:
    message = inbound("wamid.1").model_copy(update={"content": content})

    assert content_text(message) == text


# -- helpers for the turn's later steps ----------------------------------------------------

HOLDING = "Someone from Acme will answer you shortly."
CALLS = [
    ToolCall(id="call_a", tool="check_availability", arguments={"day": "mon"}),
    ToolCall(id="call_b", tool="get_price", arguments={"service": "haircut"}),
]
KEY_A, KEY_B = (tool_call_key("wamid.1", 0, c.id) for c in CALLS)


def done(key: str, result: dict[str, Any] | None = None, error=None) -> ToolCallCompleted:
    return ToolCallCompleted(
        tenant_id=TENANT,
        correlation_id="wamid.1",
        conversation_id=CONVERSATION,
        tool_call_id=key,
        tool="check_availability",
        result=result,
        error=error,
    )


def sent_as(turn_id: str, wamid: str) -> WhatsAppMessageSent:
    return WhatsAppMessageSent(
        tenant_id=TENANT,
        correlation_id=turn_id,
        conversation_id=CONVERSATION,
        command_id=f"c-{turn_id}",
        wamid=wamid,
        to=LEAD,
        reference=turn_id,
    )


def status(wamid: str, value: str, **fields: Any) -> WhatsAppStatusReceived:
    return WhatsAppStatusReceived(
        tenant_id=TENANT,
        correlation_id=wamid,
        wamid=wamid,
        phone_number_id=NUMBER,
        lead=LEAD,
        status=value,
        wa_timestamp=LONG_AGO,
        **fields,
    )


def data_of(app: Conversations, name: str) -> list[dict[str, Any]]:
    """The stored data of every event of one type, in order."""
    return [e["data"] for e in app.history_of(TENANT, CONVERSATION) if e["type"] == name]


def by_call(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(results, key=lambda r: r["call_id"])


# -- bursts and superseded turns -----------------------------------------------------------


@pytest.fixture
def bursty() -> Conversations:
    return Conversations(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, burst_window_s=2.0)


def test_a_burst_of_three_messages_is_answered_by_one_turn(bursty) -> None:
    for n, body in enumerate(["hi", "do you open on sunday", "and at what time?"], 1):
        assert bursty.receive(inbound(f"wamid.{n}", body)) is True
    assert stored(bursty) == ["Started", "MessageReceived", "MessageReceived", "MessageReceived"]

    assert bursty.flush(ID) is True
    assert bursty.flush(ID) is False  # the burst timer fired twice

    [requested] = data_of(bursty, "ReplyRequested")
    assert requested["turn_id"] == "wamid.3"
    assert requested["text"] == "hi\ndo you open on sunday\nand at what time?"
    assert bursty.compose(generated("wamid.3", "Sundays 10 to 14.")) is True
    assert bursty.get(TENANT, CONVERSATION).replies == {"wamid.3": "Sundays 10 to 14."}


def test_flushing_an_unknown_conversation_is_an_error(bursty) -> None:
    with pytest.raises(ConversationNotFoundError):
        bursty.flush(ID)


def test_a_message_while_a_turn_is_open_supersedes_it(app) -> None:
    app.receive(inbound("wamid.1", "do you cut kids' hair?"))

    app.receive(inbound("wamid.2", "and how much is it?"))

    assert stored(app)[-3:] == ["MessageReceived", "TurnSuperseded", "ReplyRequested"]
    assert app.compose(generated("wamid.1", "Yes, we do.")) is False  # late, for the old turn
    assert app.compose(generated("wamid.2", "Yes, 12 EUR.")) is True
    assert app.get(TENANT, CONVERSATION).replies == {"wamid.2": "Yes, 12 EUR."}
    [superseded] = data_of(app, "TurnSuperseded")
    assert superseded["turn_id"] == "wamid.1"
    [*_, requested] = data_of(app, "ReplyRequested")
    assert requested["text"] == "do you cut kids' hair?\nand how much is it?"


def test_a_decision_on_stale_state_is_taken_again_after_a_concurrent_save(app, monkeypatch) -> None:
    app.receive(inbound("wamid.1"))
    load = app.repository.get
    raced: list[bool] = []

    def load_then_race(*args: Any, **kwargs: Any) -> Any:
        loaded = load(*args, **kwargs)
        if not raced:  # another worker saves between this load and this save
            raced.append(True)
            app.receive(inbound("wamid.2"))
        return loaded

    monkeypatch.setattr(app.repository, "get", load_then_race)

    # On the stale state wamid.1's turn is open; reloaded, it has been superseded.
    assert app.compose(generated("wamid.1")) is False
    assert raced == [True]
    assert "ReplyComposed" not in stored(app)
    assert list(app.get(TENANT, CONVERSATION).open_turns) == ["wamid.2"]


# -- tool calls ----------------------------------------------------------------------------


def test_two_tool_calls_answered_in_any_order_ask_inference_once_more(app) -> None:
    app.receive(inbound("wamid.1", "a haircut on monday?"))

    assert app.compose(generated("wamid.1", None, tool_calls=CALLS)) is True
    [requested] = data_of(app, "ToolCallsRequested")
    assert [c["key"] for c in requested["calls"]] == [KEY_A, KEY_B]

    busy = ToolError(code="calendar_busy", message="try again later", retryable=True)
    assert app.tool_completed(done(KEY_B, {"price_eur": 15})) is True
    assert app.tool_completed(done(KEY_B, {"price_eur": 15})) is False  # redelivered
    assert app.tool_completed(done(KEY_A, error=busy)) is True
    assert app.tool_completed(done(KEY_A, {"slots": []})) is False  # redelivered, changed

    rounds = data_of(app, "ReplyRequested")
    assert [r["round"] for r in rounds] == [0, 1]
    assert rounds[1]["text"] == "a haircut on monday?"
    assert by_call(rounds[1]["tool_results"]) == [
        {"call_id": "call_a", "result": None, "error": busy.model_dump()},
        {"call_id": "call_b", "result": {"price_eur": 15}, "error": None},
    ]
    assert app.compose(generated("wamid.1", "Monday is full.", tool_calls=CALLS)) is False
    assert app.compose(generated("wamid.1", "Monday is full; 15 EUR.", round=1)) is True
    assert app.get(TENANT, CONVERSATION).replies == {"wamid.1": "Monday is full; 15 EUR."}


def test_the_third_round_of_tool_calls_hands_the_conversation_off(app) -> None:
    app.receive(inbound("wamid.1", "book me in"))
    for round in range(MAX_TOOL_ROUNDS - 1):
        app.compose(generated("wamid.1", None, round=round, tool_calls=CALLS[:1]))
        app.tool_completed(done(tool_call_key("wamid.1", round, "call_a"), {"ok": True}))

    last = generated("wamid.1", None, round=MAX_TOOL_ROUNDS - 1, tool_calls=CALLS[:1])
    assert app.compose(last) is True

    assert stored(app).count("ToolCallsRequested") == MAX_TOOL_ROUNDS - 1
    assert stored(app)[-2:] == ["ReplyComposed", "HandedOff"]
    [handed_off] = data_of(app, "HandedOff")
    assert handed_off["reason"] == f"still calling tools after {MAX_TOOL_ROUNDS} rounds"
    assert app.get(TENANT, CONVERSATION).mode == "human"


# -- deadlines -----------------------------------------------------------------------------


def test_a_deadline_on_an_open_turn_sends_a_holding_reply_and_hands_off(app) -> None:
    app.receive(inbound("wamid.1"))

    assert app.deadline_passed(ID, "wamid.1", HOLDING) is True
    assert app.deadline_passed(ID, "wamid.1", HOLDING) is False  # the timer fired twice

    assert stored(app)[-3:] == ["TurnTimedOut", "ReplyComposed", "HandedOff"]
    conversation = app.get(TENANT, CONVERSATION)
    assert conversation.replies == {"wamid.1": HOLDING}
    assert conversation.mode == "human"
    assert app.compose(generated("wamid.1", "Too late")) is False


def test_a_deadline_on_an_answered_turn_changes_nothing(app) -> None:
    app.receive(inbound("wamid.1"))
    app.compose(generated("wamid.1"))
    before = stored(app)

    assert app.deadline_passed(ID, "wamid.1", HOLDING) is False

    assert stored(app) == before
    assert app.get(TENANT, CONVERSATION).mode == "bot"


# -- delivery statuses ---------------------------------------------------------------------


def test_statuses_move_only_forward_and_map_by_the_wamid_of_our_reply(app) -> None:
    app.receive(inbound("wamid.1"))
    app.compose(generated("wamid.1"))
    app.sent(sent_as("wamid.1", "wamid.out.1"))

    assert app.status(status("wamid.1", "read")) is False  # the lead's message, not ours
    assert app.status(status("wamid.out.1", "delivered")) is True
    assert app.status(status("wamid.out.1", "read")) is True
    assert app.status(status("wamid.out.1", "delivered")) is False  # late, out of order
    assert app.status(status("wamid.out.1", "read")) is False  # redelivered

    changes = data_of(app, "ReplyStatusChanged")
    assert [(d["turn_id"], d["wamid"], d["status"]) for d in changes] == [
        ("wamid.1", "wamid.out.1", "delivered"),
        ("wamid.1", "wamid.out.1", "read"),
    ]


def test_a_status_for_a_lead_without_a_conversation_is_ignored(app) -> None:
    assert app.status(status("wamid.out.1", "read")) is False
    assert stored(app) == []


def test_a_failed_status_for_our_reply_is_recorded_as_a_failure(app) -> None:
    app.receive(inbound("wamid.1"))
    app.compose(generated("wamid.1"))
    app.sent(sent_as("wamid.1", "wamid.out.1"))

    failed = status("wamid.out.1", "failed", errors=[{"code": 131047, "title": "Re-engagement"}])
    assert app.status(failed) is True
    assert stored(app)[-3:] == ["ReplyFailed", "WindowClosed", "HandedOff"]


# -- people --------------------------------------------------------------------------------


def test_while_a_human_holds_it_the_bot_stays_silent(app) -> None:
    app.receive(inbound("wamid.1", "can I talk to someone?"))

    assert app.take_over(TENANT, CONVERSATION, "ana") is True
    assert app.take_over(TENANT, CONVERSATION, "bob") is False

    assert stored(app)[-2:] == ["TurnSuperseded", "HandedOff"]
    assert app.receive(inbound("wamid.2", "hello?")) is True
    assert stored(app)[-1] == "MessageReceived"  # recorded, not answered
    assert app.compose(generated("wamid.1")) is False  # inference's late answer
    assert "ReplyComposed" not in stored(app)
    assert app.get(TENANT, CONVERSATION).history[-1] == {"role": "lead", "text": "hello?"}


def test_a_human_reply_inside_the_window_goes_out_as_its_own_turn(app) -> None:
    app.receive(inbound("wamid.1", at=datetime.now(UTC) - timedelta(hours=23)))
    app.take_over(TENANT, CONVERSATION, "ana")

    turn_id = app.human_reply(TENANT, CONVERSATION, "ana", "Hi, Ana here!")

    assert stored(app)[-1] == "HumanReplied"
    assert app.get(TENANT, CONVERSATION).replies == {turn_id: "Hi, Ana here!"}
    assert app.sent(sent_as(turn_id, "wamid.out.h")) is True
    assert app.status(status("wamid.out.h", "read")) is True


def test_a_human_reply_outside_the_window_is_refused(app) -> None:
    app.receive(inbound("wamid.1", at=datetime.now(UTC) - timedelta(hours=25)))
    app.take_over(TENANT, CONVERSATION, "ana")

    with pytest.raises(WindowClosedError):
        app.human_reply(TENANT, CONVERSATION, "ana", "Still there?")
    assert stored(app)[-1] == "HandedOff"


def test_a_human_reply_needs_the_conversation_taken_over(app) -> None:
    app.receive(inbound("wamid.1", at=datetime.now(UTC)))

    with pytest.raises(NotHeldByHumanError):
        app.human_reply(TENANT, CONVERSATION, "ana", "Hi!")
    assert app.release(TENANT, CONVERSATION, "ana") is False


def test_people_act_only_on_their_own_tenants_conversations(app) -> None:
    app.receive(inbound("wamid.1", at=datetime.now(UTC)))

    with pytest.raises(ConversationNotFoundError):
        app.take_over("globex", CONVERSATION, "mallory")
    with pytest.raises(ConversationNotFoundError):
        app.human_reply("globex", CONVERSATION, "mallory", "Hi!")
    with pytest.raises(ConversationNotFoundError):
        app.release("globex", CONVERSATION, "mallory")
    with pytest.raises(ConversationNotFoundError):
        app.take_over(TENANT, "not-a-uuid", "ana")
    assert app.get(TENANT, CONVERSATION).mode == "bot"


def test_releasing_lets_the_bot_answer_the_next_message(app) -> None:
    app.receive(inbound("wamid.1"))
    app.take_over(TENANT, CONVERSATION, "ana")

    assert app.release(TENANT, CONVERSATION, "ana") is True
    assert app.release(TENANT, CONVERSATION, "ana") is False
    assert stored(app)[-1] == "BotResumed"

    app.receive(inbound("wamid.2", "what time do you open?"))

    assert stored(app)[-2:] == ["MessageReceived", "ReplyRequested"]
    assert data_of(app, "ReplyRequested")[-1]["text"] == "what time do you open?"
    assert app.compose(generated("wamid.2", "At 9.")) is True


# -- snapshots -----------------------------------------------------------------------------


def state(conversation: Conversation) -> dict[str, Any]:
    return {k: v for k, v in vars(conversation).items() if not k.startswith("_")}


def replayed(app: Conversations) -> Conversation:
    """The conversation rebuilt from every stored event, ignoring snapshots."""
    aggregate = None
    stored_events: list[Any] = list(app.events.get(ID))
    for stored_event in stored_events:
        aggregate = stored_event.mutate(aggregate)
    assert isinstance(aggregate, Conversation)
    return aggregate


def test_a_snapshot_taken_mid_turn_restores_everything_the_turn_needs(app) -> None:
    for n in range(32):  # Started, then 3 events per exchange: version 97
        app.receive(inbound(f"wamid.{n}", f"message {n}"))
        app.compose(generated(f"wamid.{n}", f"answer {n}"))
    app.receive(inbound("wamid.1000", "any slot on monday?"))
    app.compose(generated("wamid.1000", None, tool_calls=CALLS))  # version 100: a snapshot

    [snapshot] = app.snapshots.get(ID)
    assert snapshot.originator_version == 100
    loaded = app.repository.get(ID)
    assert loaded.version == 100
    assert state(loaded) == state(replayed(app))
    keys = [tool_call_key("wamid.1000", 0, c.id) for c in CALLS]
    assert list(loaded.open_turns["wamid.1000"]["calls"]) == keys

    # The conversation carries on from the snapshot.
    assert app.receive(inbound("wamid.0")) is False
    assert app.tool_completed(done(keys[1], {"price_eur": 15})) is True
    assert app.tool_completed(done(keys[0], {"slots": ["10:00"]})) is True
    assert data_of(app, "ReplyRequested")[-1]["round"] == 1
    assert app.compose(generated("wamid.1000", "10:00, 15 EUR.", round=1)) is True
    assert state(app.repository.get(ID)) == state(replayed(app))
    assert app.get(TENANT, CONVERSATION).replies["wamid.1000"] == "10:00, 15 EUR."
