"""The envelope every message on the bus carries, and the ids that become subject tokens."""

from __future__ import annotations

import json
import uuid

import pytest
from pydantic import TypeAdapter, ValidationError

from taskpilot.contracts import LeadId, TenantId
from taskpilot.contracts.inference import GenerateReply, ReplyGenerated, Turn
from taskpilot.contracts.knowledge import KnowledgeUpdated


def command(**overrides) -> GenerateReply:
    fields = {
        "tenant_id": "acme",
        "correlation_id": "wamid.1",
        "conversation_id": "c-1",
        "turn_id": "wamid.1",
        "lead": "34600111222",
        "text": "hola",
        "history": [Turn(role="lead", text="hi")],
    }
    return GenerateReply(**(fields | overrides))


def test_senders_never_spell_type_and_version() -> None:
    message = command()

    assert message.type == "GenerateReply"
    assert message.schema_version == GenerateReply.SCHEMA_VERSION == 1
    assert isinstance(message.event_id, uuid.UUID)
    assert message.occurred_at.utcoffset() is not None


def test_type_and_version_are_written_on_the_wire() -> None:
    body = json.loads(command().to_bytes())

    assert (body["type"], body["schema_version"]) == ("GenerateReply", 1)


def test_a_message_read_with_a_newer_schema_version_keeps_it() -> None:
    body = json.loads(command().to_bytes()) | {"schema_version": 2}

    assert GenerateReply.from_bytes(json.dumps(body).encode()).schema_version == 2


def test_every_message_gets_its_own_event_id() -> None:
    assert command().event_id != command().event_id


def test_messages_are_immutable() -> None:
    with pytest.raises(ValidationError):
        command().text = "changed"  # type: ignore[misc]


def test_a_message_round_trips_through_bytes() -> None:
    message = command()

    assert GenerateReply.from_bytes(message.to_bytes()) == message


def test_readers_ignore_fields_they_do_not_know() -> None:
    original = command()
    body = json.loads(original.to_bytes()) | {"language": "es", "priority": {"level": 1}}

    message = GenerateReply.from_bytes(json.dumps(body).encode())

    assert message == original
    assert "language" not in message.model_dump()


def test_a_missing_required_field_is_refused() -> None:
    body = json.loads(command().to_bytes())
    del body["turn_id"]

    with pytest.raises(ValidationError):
        GenerateReply.from_bytes(json.dumps(body).encode())


def test_caused_keeps_tenant_and_correlation_and_names_the_cause() -> None:
    cause = command()

    effect = cause.caused(
        ReplyGenerated,
        conversation_id=cause.conversation_id,
        turn_id=cause.turn_id,
        text="Hi!",
        tier="L1",
        source="template",
    )

    assert isinstance(effect, ReplyGenerated)
    assert effect.tenant_id == cause.tenant_id
    assert effect.correlation_id == cause.correlation_id
    assert effect.causation_id == str(cause.event_id)
    assert effect.event_id != cause.event_id
    assert effect.type == "ReplyGenerated"


def test_a_chain_of_causes_keeps_the_original_correlation() -> None:
    first = command(correlation_id="wamid.origin")
    second = first.caused(KnowledgeUpdated, version=2, change="faq_created")
    third = second.caused(KnowledgeUpdated, version=3, change="faq_deleted")

    assert third.correlation_id == "wamid.origin"
    assert third.causation_id == str(second.event_id)


# -- tenant and lead ids -------------------------------------------------------------------


@pytest.mark.parametrize("value", ["acme", "acme-2", "ACME_eu", "a", "x" * 64, "34600111222"])
def test_subject_safe_ids_are_accepted(value: str) -> None:
    assert TypeAdapter(TenantId).validate_python(value) == value
    assert TypeAdapter(LeadId).validate_python(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "acme.eu", "acme eu", "acme*", "*", ">", "acme>", "a\tb", "x" * 65, "ácme", "a/b"],
)
def test_ids_that_would_break_a_subject_are_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(TenantId).validate_python(value)
    with pytest.raises(ValidationError):
        TypeAdapter(LeadId).validate_python(value)


def test_a_message_with_a_bad_tenant_is_refused() -> None:
    with pytest.raises(ValidationError):
        command(tenant_id="acme.*")


def test_an_id_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(TenantId).validate_python("acme\n")
