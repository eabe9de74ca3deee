"""The catalogue of public messages, their JSON Schemas and the multi-type parser."""

from __future__ import annotations

import json

import pytest

from taskpilot.contracts.catalogue import BY_TYPE, MESSAGES, OneOf, export, json_schemas
from taskpilot.contracts.conversation import (
    CONVERSATION_EVENTS,
    ConversationHandedOff,
    ReplySent,
)
from taskpilot.contracts.knowledge import KnowledgeUpdated


def test_every_message_type_is_named_once() -> None:
    assert len(BY_TYPE) == len(MESSAGES)
    assert all(BY_TYPE[m.TYPE] is m for m in MESSAGES)


def test_every_message_has_a_channel() -> None:
    for message in MESSAGES:
        assert message.CHANNEL is not None, message.TYPE
        assert "tenant" in message.CHANNEL.placeholders, message.TYPE


def test_every_conversation_event_has_its_own_event_token() -> None:
    tokens = [e.EVENT for e in CONVERSATION_EVENTS]

    assert all(tokens)
    assert len(set(tokens)) == len(tokens)


def test_there_is_a_schema_for_every_message_with_its_subject() -> None:
    schemas = json_schemas()

    for message in MESSAGES:
        schema = schemas[f"{message.TYPE}.v{message.SCHEMA_VERSION}"]
        assert schema["x-subject"] == message.CHANNEL.pattern
        assert schema["x-schema-version"] == message.SCHEMA_VERSION
        stream = message.CHANNEL.stream
        assert schema["x-stream"] == (stream.name if stream else None)
        assert "tenant_id" in schema["properties"]  # type: ignore[operator]
    assert set(schemas) == {f"{m.TYPE}.v{m.SCHEMA_VERSION}" for m in MESSAGES} | {
        "KnowledgeSearchResult.v1"
    }


def test_schemas_are_exported_as_json_files(tmp_path) -> None:
    written = export(tmp_path / "schemas")

    assert len(written) == len(json_schemas())
    for path in written:
        assert path.name.endswith(".schema.json")
        assert json.loads(path.read_text())


def handed_off() -> ConversationHandedOff:
    return ConversationHandedOff(
        tenant_id="acme",
        correlation_id="wamid.1",
        conversation_id="c-1",
        lead="346",
        sequence=5,
        reason="refund",
    )


def test_one_of_parses_each_message_by_its_type() -> None:
    parser = OneOf(ConversationHandedOff, ReplySent)
    message = handed_off()

    assert parser.model_validate_json(message.to_bytes()) == message
    assert parser.TYPE == "ConversationHandedOff|ReplySent"


def test_one_of_skips_types_it_does_not_know() -> None:
    other = KnowledgeUpdated(tenant_id="acme", correlation_id="x", version=1, change="faq")

    assert OneOf(ConversationHandedOff).model_validate_json(other.to_bytes()) is None


def test_one_of_can_refuse_types_it_does_not_know() -> None:
    other = KnowledgeUpdated(tenant_id="acme", correlation_id="x", version=1, change="faq")

    with pytest.raises(ValueError, match="unexpected message type"):
        OneOf(ConversationHandedOff, skip_unknown=False).model_validate_json(other.to_bytes())


def test_one_of_reads_str_as_well_as_bytes() -> None:
    message = handed_off()

    assert OneOf(ConversationHandedOff).model_validate_json(message.model_dump_json()) == message
