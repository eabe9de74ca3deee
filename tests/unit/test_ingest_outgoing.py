"""What the webhook hands to the bus: each update once encoded, with its Nats-Msg-Id and an
event id that Meta's redeliveries share."""

from __future__ import annotations

from taskpilot.contracts.whatsapp import WhatsAppMessageReceived, WhatsAppStatusReceived
from taskpilot.ingest import domain
from taskpilot.ingest.meta import message_value, text_message, webhook

NUMBER = "555"


def status(wamid: str, state: str) -> dict[str, object]:
    return {"id": wamid, "status": state, "timestamp": "1700000000", "recipient_id": "346"}


def batch() -> dict[str, object]:
    value = message_value(NUMBER, [text_message("346", "hi", "wamid.A")])
    value["statuses"] = [status("wamid.B", "read"), status("wamid.B", "delivered")]
    return webhook(value)


def test_every_update_goes_out_once_encoded_with_its_msg_id() -> None:
    parsed = domain.split_webhook(batch(), "shop", {NUMBER})

    assert [o.msg_id for o in parsed.outgoing] == ["wamid.A", "wamid.B:read", "wamid.B:delivered"]
    for part in parsed.outgoing:
        kind = type(part.message)
        assert kind.model_validate_json(part.body) == part.message
    assert [o.message for o in parsed.outgoing] == [*parsed.messages, *parsed.statuses]


def test_a_redelivered_update_keeps_its_event_id_and_others_differ() -> None:
    first = domain.split_webhook(batch(), "shop", {NUMBER})
    again = domain.split_webhook(batch(), "shop", {NUMBER})
    elsewhere = domain.split_webhook(batch(), "other", {NUMBER})

    ids = [o.message.event_id for o in first.outgoing]
    assert ids == [o.message.event_id for o in again.outgoing]
    assert len(set(ids)) == 3
    assert not set(ids) & {o.message.event_id for o in elsewhere.outgoing}
    assert isinstance(first.outgoing[0].message, WhatsAppMessageReceived)
    assert isinstance(first.outgoing[1].message, WhatsAppStatusReceived)
