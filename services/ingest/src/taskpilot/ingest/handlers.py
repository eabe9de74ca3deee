"""Every NATS subscription of ingest, in one place."""

from __future__ import annotations

from taskpilot.contracts import subjects
from taskpilot.contracts.whatsapp import MarkMessageRead, SendWhatsAppMessage
from taskpilot.ingest.service import SenderService
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import ConsumerPolicy, ConsumerSpec, subscribe


def sender_spec(max_attempts: int) -> ConsumerSpec:
    """The sender retries Meta's throttling itself (RetryLater); one delivery per attempt."""
    return ConsumerSpec(
        durable="ingest-sender",
        stream=subjects.WHATSAPP_OUT,
        filter_subject=subjects.WA_SEND.wildcard(),
        policy=ConsumerPolicy(max_deliver=max_attempts, ack_wait_s=30.0, workers=16),
    )


MARK_READ = ConsumerSpec(
    durable="ingest-mark-read",
    stream=subjects.WHATSAPP_OUT,
    filter_subject=subjects.WA_MARK_READ.wildcard(),
    policy=ConsumerPolicy(max_deliver=2, ack_wait_s=10.0, workers=16),
)


def register(bus: Bus, sender: SenderService, max_attempts: int) -> None:
    subscribe(bus, sender_spec(max_attempts), SendWhatsAppMessage, sender.send)
    subscribe(bus, MARK_READ, MarkMessageRead, sender.mark_read)
