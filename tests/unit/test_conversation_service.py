"""Conversation use cases (load, decide, save) on eventsourcing's in-memory persistence."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskpilot.contracts.inference import ReplyGenerated
from taskpilot.contracts.whatsapp import (
    MediaContent,
    TextContent,
    WhatsAppMessageReceived,
    WhatsAppMessageSent,
    WhatsAppSendFailed,
)
from taskpilot.conversation.domain import conversation_id
from taskpilot.conversation.service import (
    ConversationNotFoundError,
    Conversations,
    content_text,
)

TENANT, LEAD, NUMBER = "acme", "34600111222", "pn-1"
CONVERSATION = str(conversation_id(TENANT, LEAD))


@pytest.fixture
def app() -> Conversations:
    return Conversations(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def inbound(wamid: str, body: str = "hola", tenant: str = TENANT) -> WhatsAppMessageReceived:
    return WhatsAppMessageReceived(
        tenant_id=tenant,
        correlation_id=wamid,
        wamid=wamid,
        phone_number_id=NUMBER,
        lead=LEAD,
        lead_name="Ana",
        wa_timestamp=datetime(2025, 1, 1, tzinfo=UTC),
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
    assert app.get(TENANT, CONVERSATION).open_turns == {"wamid.1": "wamid.1"}


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
    assert app.get(TENANT, CONVERSATION).version == 1 + 2 * 21


def test_a_long_conversation_keeps_recognising_redeliveries(app) -> None:
    for n in range(60):  # Started + 2 events per message: version 100 is reached
        assert app.receive(inbound(f"wamid.{n}")) is True

    assert app.receive(inbound("wamid.0")) is False


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
    assert stored(app)[-1] == "ReplySent"


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
    assert stored(app)[-2:] == ["ReplyFailed", "HandedOff"]
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
