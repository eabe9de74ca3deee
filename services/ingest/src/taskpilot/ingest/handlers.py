"""Every NATS subscription of ingest, in one place."""

from __future__ import annotations

from taskpilot.contracts import subjects
from taskpilot.contracts.whatsapp import (
    MarkMessageRead,
    SendWhatsAppMessage,
    WhatsAppMessageReceived,
)
from taskpilot.ingest.media import media_of
from taskpilot.ingest.service import MediaService, SenderService
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import ConsumerPolicy, ConsumerSpec, subscribe

_PARTITIONING: subjects.Partitioning = subjects.WHATSAPP_IN.partitioning  # type: ignore[assignment]


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


MEDIA_BACKOFF_S = (1.0, 5.0, 30.0, 120.0)
"""Between attempts at one media: Meta's hiccups pass in seconds, its outages in minutes."""


def media_spec(max_attempts: int, retry_scale: float = 1.0) -> ConsumerSpec:
    """Every inbound message of every partition (no order needed); only media is handled."""
    return ConsumerSpec(
        durable="ingest-media",
        stream=subjects.WHATSAPP_IN,
        filter_subject=_PARTITIONING.filter("*", "message"),
        policy=ConsumerPolicy(
            max_deliver=max_attempts,
            ack_wait_s=60.0,
            backoff_s=tuple(d * retry_scale for d in MEDIA_BACKOFF_S),
            workers=8,
        ),
    )


class MediaMessages:
    """Parses inbound messages that carry media; any other is skipped (acked) unread."""

    TYPE = WhatsAppMessageReceived.TYPE

    def model_validate_json(self, data: bytes) -> WhatsAppMessageReceived | None:
        if b'"media_id"' not in data:  # most messages are text: no need to parse them
            return None
        message = WhatsAppMessageReceived.model_validate_json(data)
        return message if media_of(message) is not None else None


def register(
    bus: Bus,
    sender: SenderService,
    keeper: MediaService | None,
    send_max_attempts: int,
    media_max_attempts: int,
    retry_scale: float = 1.0,
) -> None:
    """``keeper`` None: the media consumer runs in another process."""
    subscribe(bus, sender_spec(send_max_attempts), SendWhatsAppMessage, sender.send)
    subscribe(bus, MARK_READ, MarkMessageRead, sender.mark_read)
    if keeper is not None:
        spec = media_spec(media_max_attempts, retry_scale)
        subscribe(bus, spec, MediaMessages(), keeper.keep)
