"""Every NATS subscription of the conversation service, in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from taskpilot.contracts import Message, subjects
from taskpilot.contracts.conversation import TurnFinished
from taskpilot.contracts.inference import ReplyGenerated
from taskpilot.contracts.tools import PaymentReceived, ToolCallCompleted
from taskpilot.contracts.whatsapp import (
    WhatsAppMessageReceived,
    WhatsAppMessageSent,
    WhatsAppSendFailed,
    WhatsAppStatusReceived,
)
from taskpilot.conversation.committer import GroupCommitter
from taskpilot.conversation.memory import LeadMemory
from taskpilot.conversation.service import (
    Change,
    ConversationNotFoundError,
    Conversations,
    window_template,
)
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import ConsumerPolicy, ConsumerSpec, subscribe
from taskpilot.tenancy import BusinessProfile, TenantDirectory

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
PAYMENTS = ConsumerSpec(
    "conversation-payments", subjects.TOOLS, subjects.TOOL_PAYMENT_RECEIVED.wildcard()
)
SENT = ConsumerSpec("conversation-sent", subjects.WHATSAPP_OUT, subjects.WA_SENT.wildcard())
SEND_FAILED = ConsumerSpec(
    "conversation-send-failed", subjects.WHATSAPP_OUT, subjects.WA_SEND_FAILED.wildcard()
)
# Our own finished turns, to the lead's memory; knowledge may be away for a while.
MEMORY = ConsumerSpec(
    "conversation-memory",
    subjects.CONVERSATION,
    subjects.CONVERSATION_EVENT.wildcard(event=TurnFinished.EVENT),
    ConsumerPolicy(max_deliver=8, backoff_s=(1.0, 5.0, 30.0, 120.0, 600.0)),
)


def payment_thanks(profile: BusinessProfile, payment: PaymentReceived) -> str:
    amount = ""
    if payment.amount_minor is not None and payment.currency:
        amount = f" of {payment.amount_minor / 100:.2f} {payment.currency.upper()}"
    return profile.render(profile.payment_received_template).replace("{amount}", amount)


def _committed(
    committer: GroupCommitter, change: Callable[[M], Change], tolerate_missing: bool = False
) -> Callable[[M], Awaitable[None]]:
    async def handle(message: M) -> None:
        try:
            await committer.run(change(message))
        except ConversationNotFoundError:
            if not tolerate_missing:
                raise

    return handle


async def _always_hot(tenant_id: str, lead: str) -> bool:
    return False


async def _nothing_to_wait_for() -> None:
    return None


def register(
    bus: Bus,
    app: Conversations,
    committer: GroupCommitter,
    tenants: TenantDirectory,
    partitions: list[int],
    memory: LeadMemory,
    ensure_hot: Callable[[str, str], Awaitable[bool]] = _always_hot,
    relay_caught_up: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """``relay_caught_up`` (if given) is awaited before a new lead message or status is taken
    on: new work waits while the relay lags (see :class:`~.relay.Backpressure`); replies, tool
    results and sends, which finish turns already under way, never wait."""
    caught_up = relay_caught_up or _nothing_to_wait_for

    async def when_reply_generated(reply: ReplyGenerated) -> None:
        profile = (await tenants.get(reply.tenant_id)).profile
        holding = profile.render(profile.handoff_message)
        await committer.run(app.compose_change(reply, holding, window_template(profile)))

    received = _committed(committer, app.receive_change)

    async def when_message_received(message: WhatsAppMessageReceived) -> None:
        await caught_up()
        # An archived lead writes again: bring the history back before deciding on it.
        await ensure_hot(message.tenant_id, message.lead)
        await received(message)

    statuses = _committed(committer, app.status_change, tolerate_missing=True)

    async def when_status_received(status: WhatsAppStatusReceived) -> None:
        await caught_up()
        await statuses(status)

    for partition in partitions:
        subscribe(bus, inbound_spec(partition), WhatsAppMessageReceived, when_message_received)
    # A status of a message no conversation sent (e.g. sent from Meta's own tools) is fine.
    subscribe(bus, STATUSES, WhatsAppStatusReceived, when_status_received)
    subscribe(bus, REPLIES, ReplyGenerated, when_reply_generated)

    async def when_payment_received(payment: PaymentReceived) -> None:
        if not payment.conversation_id:
            return  # a payment link created outside a conversation
        profile = (await tenants.get(payment.tenant_id)).profile
        thanks = payment_thanks(profile, payment)
        await committer.run(app.payment_change(payment, thanks, window_template(profile)))

    subscribe(bus, PAYMENTS, PaymentReceived, when_payment_received)
    subscribe(
        bus, TOOL_RESULTS, ToolCallCompleted, _committed(committer, app.tool_completed_change)
    )
    subscribe(bus, SENT, WhatsAppMessageSent, _committed(committer, app.sent_change))
    subscribe(bus, SEND_FAILED, WhatsAppSendFailed, _committed(committer, app.failed_change))

    async def when_turn_finished(turn: TurnFinished) -> None:
        await memory.remember(turn)

    subscribe(bus, MEMORY, TurnFinished, when_turn_finished)
