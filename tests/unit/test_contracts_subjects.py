"""Subjects are built only through Channels, and only from safe tokens."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from nats.js.api import RetentionPolicy

from taskpilot.contracts import subjects
from taskpilot.contracts.conversation import ReplyComposed
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.contracts.subjects import Channel, Stream
from taskpilot.contracts.whatsapp import TextContent, WhatsAppMessageReceived
from taskpilot.runtime.bus import stream_config

STREAM = Stream("TEST", ("test.>",), "for tests")
CHANNEL = Channel("test.{tenant}.{lead}.message", STREAM)


def test_a_channel_knows_its_placeholders() -> None:
    assert CHANNEL.placeholders == ("tenant", "lead")


def test_a_subject_is_the_pattern_filled_in() -> None:
    assert CHANNEL.subject(tenant="acme", lead="346") == "test.acme.346.message"


def test_a_missing_placeholder_is_refused() -> None:
    with pytest.raises(ValueError, match="missing"):
        CHANNEL.subject(tenant="acme")


@pytest.mark.parametrize("token", ["", "a.b", "*", ">", "a b", "a\tb", "a\nb", "a\rb", "ac*"])
def test_a_bad_token_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="not a subject token"):
        CHANNEL.subject(tenant="acme", lead=token)


def test_a_wildcard_stands_for_every_placeholder_not_given() -> None:
    assert CHANNEL.wildcard() == "test.*.*.message"
    assert CHANNEL.wildcard(tenant="acme") == "test.acme.*.message"


def test_every_stored_channel_lies_inside_its_stream() -> None:
    channels = [v for v in vars(subjects).values() if isinstance(v, Channel)]

    assert channels
    for channel in channels:
        if channel.stream is None:
            continue
        prefixes = [s.removesuffix(">") for s in channel.stream.subjects]
        assert any(channel.wildcard().startswith(p) for p in prefixes), channel.pattern


def test_streams_have_unique_names_and_subjects() -> None:
    names = [s.name for s in subjects.ALL_STREAMS]
    filters = [f for s in subjects.ALL_STREAMS for f in s.subjects]

    assert len(set(names)) == len(names)
    assert len(set(filters)) == len(filters)


def test_inbound_partitions_filter_stored_subjects() -> None:
    partitioning = subjects.WHATSAPP_IN.partitioning
    assert partitioning is not None

    assert partitioning.filter(3) == "wa.inp.3.>"
    assert partitioning.filter("*", "message") == "wa.inp.*.*.*.message"


def test_messages_build_their_subjects_from_their_channel() -> None:
    inbound = WhatsAppMessageReceived(
        tenant_id="acme",
        correlation_id="wamid.1",
        wamid="wamid.1",
        phone_number_id="pn-1",
        lead="34600111222",
        wa_timestamp=datetime(2025, 1, 1, tzinfo=UTC),
        content=TextContent(body="hola"),
    )
    composed = ReplyComposed(
        tenant_id="acme",
        correlation_id="wamid.1",
        conversation_id="c-1",
        lead="34600111222",
        sequence=4,
        turn_id="wamid.1",
        text="Hi!",
        tier="L1",
        source="template",
    )

    assert inbound.subject() == "wa.in.acme.34600111222.message"
    assert composed.subject() == "conversation.acme.34600111222.reply_composed"


def test_a_dead_letter_origin_is_made_a_safe_token() -> None:
    letter = DeadLettered(
        tenant_id="acme",
        correlation_id="x",
        origin="ingest.webhook v2",
        reason="malformed_json",
        error="boom",
        payload="{",
    )

    assert letter.subject() == "dlq.acme.ingest_webhook_v2"


def test_conversation_events_carry_the_lead_so_one_leads_events_can_be_selected() -> None:
    channel = subjects.CONVERSATION_EVENT

    assert channel.placeholders == ("tenant", "lead", "event")
    assert channel.wildcard(tenant="acme", lead="34600111222") == "conversation.acme.34600111222.*"
    with pytest.raises(ValueError, match="missing"):
        channel.subject(tenant="acme", event="reply_composed")


def test_the_job_queue_is_provisioned_with_every_stream_as_a_work_queue() -> None:
    configs = {s.name: stream_config(s) for s in subjects.ALL_STREAMS}

    assert configs["TOOL_JOBS"].retention == RetentionPolicy.WORK_QUEUE
    assert {n for n, c in configs.items() if c.retention != RetentionPolicy.LIMITS} == {"TOOL_JOBS"}
