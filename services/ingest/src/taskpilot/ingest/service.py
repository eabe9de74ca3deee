"""Ingest use cases: accept a webhook, verify a subscription, send a reply, keep media."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import Counter, Histogram

from taskpilot.contracts import Message
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.contracts.whatsapp import (
    MarkMessageRead,
    SendWhatsAppMessage,
    WhatsAppMediaStored,
    WhatsAppMessageReceived,
    WhatsAppMessageSent,
    WhatsAppSendFailed,
)
from taskpilot.ingest import domain, media
from taskpilot.ingest.adapters import (
    GraphApiError,
    ObjectStore,
    SendLedger,
    WhatsAppApi,
    WhatsAppMedia,
)
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import PermanentError, RetryLater, current_attempt
from taskpilot.runtime.telemetry import tracer
from taskpilot.tenancy import TenantDirectory, UnknownTenantError
from taskpilot.tenancy.buckets import Buckets

log = logging.getLogger(__name__)

WEBHOOK_UPDATES = Counter(
    "taskpilot_ingest_updates_total", "Webhook updates by kind and outcome", ["kind", "outcome"]
)
_PUBLISHED_MESSAGES = WEBHOOK_UPDATES.labels(kind="message", outcome="published")
_PUBLISHED_STATUSES = WEBHOOK_UPDATES.labels(kind="status", outcome="published")
_DUPLICATES = WEBHOOK_UPDATES.labels(kind="any", outcome="duplicate")
SENDS = Counter(
    "taskpilot_ingest_sends_total", "Graph API sends by outcome and code", ["outcome", "code"]
)
MEDIA = Counter(
    "taskpilot_ingest_media_total", "Inbound media by kind and outcome", ["kind", "outcome"]
)
WEBHOOK_ACK_SECONDS = Histogram(
    "taskpilot_ingest_webhook_ack_seconds",
    "Webhook POST from received to answered, by outcome (accepted: 200 once every update is "
    "stored; bad_signature, unknown_tenant, too_large, invalid_tenant, error)",
    ["outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class SignatureError(Exception):
    """Missing or wrong X-Hub-Signature-256: nothing is accepted."""


@dataclass
class Accepted:
    published: int
    duplicates: int
    dead_lettered: int


class Publisher(Protocol):
    async def publish(self, message: Message, *, msg_id: str, body: bytes | None = None) -> bool:
        """Store ``message`` (already encoded as ``body`` when given) on the bus, acked;
        False when ``msg_id`` was a duplicate."""
        ...


class WebhookService:
    def __init__(self, bus: Publisher, tenants: TenantDirectory):
        self._bus = bus
        self._tenants = tenants
        self._tracer = tracer("ingest")  # after the composition root set tracing up

    async def verify_subscription(self, tenant_id: str, mode: str, token: str) -> bool:
        try:
            tenant = await self._tenants.get(tenant_id)
        except UnknownTenantError:
            return False
        expected = tenant.secrets.verify_token.get_secret_value()
        return mode == "subscribe" and hmac.compare_digest(token.encode(), expected.encode())

    async def accept(self, tenant_id: str, raw_body: bytes, signature: str | None) -> Accepted:
        """Verify, split and publish. Returns only after every part is stored (or recorded).

        The webhook's span is the root of the message's trace; it is opened by hand, not with
        ``start_as_current_span``, whose two context managers cost a fifth of it on every
        webhook."""
        span = self._tracer.start_span(
            "whatsapp webhook", attributes={"taskpilot.tenant_id": tenant_id}
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            return await self._accept(tenant_id, raw_body, signature)
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            otel_context.detach(token)
            span.end()

    async def _accept(self, tenant_id: str, raw_body: bytes, signature: str | None) -> Accepted:
        tenant = await self._tenants.get(tenant_id)  # UnknownTenantError -> 404 at the edge
        if not domain.signature_valid(
            raw_body, signature, tenant.secrets.app_secret.get_secret_value()
        ):
            WEBHOOK_UPDATES.labels(kind="webhook", outcome="bad_signature").inc()
            raise SignatureError("X-Hub-Signature-256 missing or wrong")
        try:
            parsed = domain.split_webhook(
                json.loads(raw_body), tenant_id, set(tenant.phone_number_ids)
            )
        except (ValueError, domain.MalformedWebhookError) as exc:
            await self._dead_letter(tenant_id, raw_body, "malformed_webhook", str(exc))
            return Accepted(0, 0, 1)
        publishes = [
            self._bus.publish(o.message, msg_id=o.msg_id, body=o.body) for o in parsed.outgoing
        ]
        # one update per webhook is the common case: no task for it
        results = [await publishes[0]] if len(publishes) == 1 else await asyncio.gather(*publishes)
        fresh = sum(results)
        _PUBLISHED_MESSAGES.inc(len(parsed.messages))
        _PUBLISHED_STATUSES.inc(len(parsed.statuses))
        _DUPLICATES.inc(len(results) - fresh)
        for unrouted in parsed.unrouted:
            WEBHOOK_UPDATES.labels(kind="any", outcome=unrouted.reason).inc(unrouted.count)
            await self._dead_letter(
                tenant_id,
                raw_body,
                unrouted.reason,
                f"phone_number_id {unrouted.phone_number_id} is not a number of tenant {tenant_id}",
            )
        for rejected in parsed.rejected:
            await self._dead_letter(
                tenant_id,
                json.dumps(rejected.item, default=str).encode(),
                "unreadable_update",
                rejected.reason,
            )
        for error in parsed.errors:
            log.warning("webhook carried a system error: %s", error)
            WEBHOOK_UPDATES.labels(kind="error", outcome="recorded").inc()
        return Accepted(fresh, len(results) - fresh, len(parsed.unrouted) + len(parsed.rejected))

    async def _dead_letter(self, tenant_id: str, raw_body: bytes, reason: str, error: str) -> None:
        letter = DeadLettered(
            tenant_id=tenant_id,
            correlation_id=f"webhook:{domain.signature_of(raw_body, 'body')[7:23]}",
            origin="ingest.webhook",
            reason=reason,
            error=error,
            payload=raw_body.decode("utf-8", errors="replace"),
        )
        # Same body, same reason -> same id: Meta's redeliveries do not pile up.
        msg_id = f"dlq:webhook:{reason}:{domain.signature_of(raw_body, 'body')}"
        await self._bus.publish(letter, msg_id=msg_id)
        WEBHOOK_UPDATES.labels(kind="webhook", outcome=reason).inc()


class SenderService:
    def __init__(
        self,
        bus: Bus,
        tenants: TenantDirectory,
        api: WhatsAppApi,
        ledger: SendLedger,
        rate_per_number: float,
        max_attempts: int,
        retry_scale: float = 1.0,
    ):
        self._bus = bus
        self._tenants = tenants
        self._api = api
        self._ledger = ledger
        self._buckets = Buckets(rate_per_number)
        self._max_attempts = max_attempts
        self._retry_scale = retry_scale

    async def send(self, command: SendWhatsAppMessage) -> None:
        wamid = await self._ledger.wamid_of(str(command.event_id))
        if wamid is None:
            tenant = await self._tenants.get(command.tenant_id)
            await self._buckets[command.phone_number_id].take()
            token = tenant.secrets.access_token.get_secret_value()
            try:
                wamid = await self._api.send(
                    command.phone_number_id, token, domain.graph_body(command)
                )
            except GraphApiError as exc:
                SENDS.labels(outcome="error", code=str(exc.code)).inc()
                await self._on_error(command, exc, current_attempt())
                return
            await self._ledger.record(str(command.event_id), wamid)
            SENDS.labels(outcome="sent", code="").inc()
        await self._bus.publish(
            command.caused(
                WhatsAppMessageSent,
                conversation_id=command.conversation_id,
                command_id=str(command.event_id),
                wamid=wamid,
                to=command.to,
                reference=command.reference,
            ),
            msg_id=f"sent:{command.event_id}",
        )

    async def mark_read(self, command: MarkMessageRead) -> None:
        """Blue ticks and the typing indicator: a courtesy, so it is tried once, never retried."""
        tenant = await self._tenants.get(command.tenant_id)
        try:
            await self._api.mark_read(
                command.phone_number_id,
                tenant.secrets.access_token.get_secret_value(),
                command.wamid,
                command.typing,
            )
        except GraphApiError as exc:
            SENDS.labels(outcome="mark_read_error", code=str(exc.code)).inc()
            log.info("mark-as-read for %s failed: %s", command.wamid, exc)

    async def _on_error(
        self, command: SendWhatsAppMessage, exc: GraphApiError, attempt: int
    ) -> None:
        if domain.is_retryable(exc.code, exc.http_status) and attempt < self._max_attempts:
            raise RetryLater(domain.retry_delay(exc.code, attempt) * self._retry_scale, str(exc))
        await self._bus.publish(
            command.caused(
                WhatsAppSendFailed,
                conversation_id=command.conversation_id,
                command_id=str(command.event_id),
                to=command.to,
                code=exc.code,
                reason=exc.message,
                reference=command.reference,
            ),
            msg_id=f"failed:{command.event_id}",
        )
        if domain.is_retryable(exc.code, exc.http_status):
            raise PermanentError(str(exc), reason="send_attempts_exhausted")


class MediaService:
    """Downloads the media of inbound messages through the Graph API, checks it and keeps it
    in the object store, then announces it. Runs beside the webhook, never inside it."""

    def __init__(
        self,
        bus: Bus,
        tenants: TenantDirectory,
        api: WhatsAppMedia,
        store: ObjectStore,
        max_bytes: int,
        max_attempts: int,
    ):
        self._bus = bus
        self._tenants = tenants
        self._api = api
        self._store = store
        self._max_bytes = max_bytes
        self._max_attempts = max_attempts

    async def keep(self, message: WhatsAppMessageReceived) -> None:
        content = media.media_of(message)
        if content is None:
            return
        try:
            tenant = await self._tenants.get(message.tenant_id)
        except UnknownTenantError as exc:  # gone since the webhook: no token to fetch with
            raise PermanentError(str(exc), reason="unknown_tenant") from exc
        token = tenant.secrets.access_token.get_secret_value()
        limit = media.size_limit(content, self._max_bytes)
        try:
            info = await self._api.media_info(content.media_id, token)
            media.check_declared_size(info, content, limit)
            data = await self._api.download(info.url, token, limit)
            digest = media.verify(data, info.sha256, content.sha256)
        except GraphApiError as exc:
            MEDIA.labels(kind=content.kind, outcome=f"graph_error_{exc.code}").inc()
            if domain.is_retryable(exc.code, exc.http_status):
                raise  # the consumer retries on its schedule, with a fresh URL each time
            raise PermanentError(str(exc), reason="media_graph_error") from exc
        except media.MediaTooLargeError as exc:
            MEDIA.labels(kind=content.kind, outcome="too_large").inc()
            raise PermanentError(str(exc), reason="media_too_large") from exc
        except media.ChecksumMismatchError as exc:
            MEDIA.labels(kind=content.kind, outcome="checksum_mismatch").inc()
            if current_attempt() < self._max_attempts:  # a damaged transfer: read it again
                raise
            raise PermanentError(str(exc), reason="media_checksum_mismatch") from exc
        key = media.object_key(message, content, info.mime_type)
        await self._store.put(key, data, info.mime_type)
        MEDIA.labels(kind=content.kind, outcome="stored").inc()
        await self._bus.publish(
            message.caused(
                WhatsAppMediaStored,
                wamid=message.wamid,
                phone_number_id=message.phone_number_id,
                lead=message.lead,
                kind=content.kind,
                media_id=content.media_id,
                object_key=key,
                size=len(data),
                mime_type=info.mime_type,
                sha256=digest,
            ),
            msg_id=f"media:{message.wamid}",
        )
