"""Every NATS subscription of ingest, in one place."""

from __future__ import annotations

from taskpilot.contracts import subjects
from taskpilot.contracts.whatsapp import SendWhatsAppMessage
from taskpilot.ingest.service import SenderService
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import ConsumerPolicy, ConsumerSpec, subscribe

SENDER = ConsumerSpec(
    durable="ingest-sender",
    stream=subjects.WHATSAPP_OUT,
    filter_subject=subjects.WA_SEND.wildcard(),
    policy=ConsumerPolicy(max_deliver=8, ack_wait_s=30.0, workers=16),
)


def register(bus: Bus, sender: SenderService) -> None:
    subscribe(bus, SENDER, SendWhatsAppMessage, sender.send)
