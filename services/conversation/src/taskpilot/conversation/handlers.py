"""Every NATS subscription of the conversation service, in one place."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from taskpilot.contracts import Message, subjects
from taskpilot.contracts.inference import ReplyGenerated
from taskpilot.contracts.tools import ToolCallCompleted
from taskpilot.contracts.whatsapp import (
    WhatsAppMessageReceived,
    WhatsAppMessageSent,
    WhatsAppSendFailed,
    WhatsAppStatusReceived,
)
from taskpilot.conversation.service import Conversations
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import ConsumerPolicy, ConsumerSpec, subscribe

M = TypeVar("M", bound=Message)

IN_ORDER = ConsumerPolicy(ordered=True, ack_wait_s=30.0)
_PARTITIONING: subjects.Partitioning = subjects.WHATSAPP_IN.partitioning  # type: ignore[assignment]


def inbound_spec(partition: int) -> ConsumerSpec:
    return ConsumerSpec(
        durable=f"conversation-inbound-p{partition}",
        stream=subjects.WHATSAPP_IN,
        filter_subject=_PARTITIONING.filter(partition, "message"),
        policy=IN_ORDER,
    )


STATUSES = ConsumerSpec(
    "conversation-statuses", subjects.WHATSAPP_IN, _PARTITIONING.filter("*", "status")
)
REPLIES = ConsumerSpec(
    "conversation-replies", subjects.INFERENCE, subjects.REPLY_GENERATED.wildcard()
)
TOOL_RESULTS = ConsumerSpec(
    "conversation-tool-results", subjects.TOOLS, subjects.TOOL_COMPLETED.wildcard()
)
SENT = ConsumerSpec("conversation-sent", subjects.WHATSAPP_OUT, subjects.WA_SENT.wildcard())
SEND_FAILED = ConsumerSpec(
    "conversation-send-failed", subjects.WHATSAPP_OUT, subjects.WA_SEND_FAILED.wildcard()
)


def _threaded(use_case: Callable[[M], bool]) -> Callable[[M], Awaitable[None]]:
    # eventsourcing is synchronous; keep the event loop free while it saves.
    async def handle(message: M) -> None:
        await asyncio.to_thread(use_case, message)

    return handle


def register(bus: Bus, app: Conversations, partitions: list[int]) -> None:
    for partition in partitions:
        subscribe(bus, inbound_spec(partition), WhatsAppMessageReceived, _threaded(app.receive))
    subscribe(bus, STATUSES, WhatsAppStatusReceived, _threaded(app.status))
    subscribe(bus, REPLIES, ReplyGenerated, _threaded(app.compose))
    subscribe(bus, TOOL_RESULTS, ToolCallCompleted, _threaded(app.tool_completed))
    subscribe(bus, SENT, WhatsAppMessageSent, _threaded(app.sent))
    subscribe(bus, SEND_FAILED, WhatsAppSendFailed, _threaded(app.failed))
