"""Webhook use cases, both directions.

Inbound: Stripe's payment webhooks, verified against the tenant's endpoint secret, become
``PaymentReceived`` (deterministic event id per checkout session, so Stripe's retries, even days
apart, never make a second payment fact).

Outbound: every public event a tenant subscribed to becomes one ``DeliverWebhook`` command per
endpoint (fan-out), and each command is delivered, signed, under the uniform consumer policy:
retried with backoff, dead-lettered after the last attempt, and replayable from the dead-letter
stream.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from taskpilot.contracts import Message
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.contracts.tools import DeliverWebhook, PaymentReceived
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import PermanentError
from taskpilot.tools import domain
from taskpilot.tools.adapters import DeadLetterArchive, ProviderRejectedError, WebhookSender
from taskpilot.tools.repository import ToolsRepository, WebhookEndpoint
from taskpilot.tools.signing import verify

log = logging.getLogger(__name__)

PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
PUBLIC_EVENTS = (
    "LeadMessageReceived",
    "ReplyComposed",
    "ReplySent",
    "ReplyFailed",
    "ConversationHandedOff",
    "ToolCallCompleted",
    "SlotBooked",
    "BookingCancelled",
    "PaymentReceived",
    "JobCompleted",
)
"""What a tenant's endpoint may subscribe to (``*`` for all of them)."""

DELIVERY_CONSUMER = "tools-webhook-deliver"


class NotConfiguredError(LookupError):
    """The tenant has no such connection or endpoint."""


class DeadLetterNotFoundError(LookupError):
    """No replayable dead letter of this tenant has this sequence number."""


class PaymentWebhooks:
    def __init__(self, repo: ToolsRepository, bus: Bus, *, tolerance_s: int = 300):
        self._repo = repo
        self._bus = bus
        self._tolerance = tolerance_s

    async def when_stripe_event(self, tenant_id: str, body: bytes, header: str | None) -> str:
        """Verify and handle one Stripe event; returns what was done (for the response).

        Raises NotConfiguredError, or BadSignatureError (the API answers 400 to both).
        """
        config = await self._repo.load_config(tenant_id)
        connection = config.connections.get("payments")
        if connection is None or connection.provider != "stripe":
            raise NotConfiguredError("no Stripe connection")
        verify(header, body, connection.secrets["webhook_secret"], time.time(), self._tolerance)
        event = json.loads(body)
        if event.get("type") not in PAID_EVENTS:
            return "ignored"
        session = event["data"]["object"]
        if session.get("payment_status") not in ("paid", "no_payment_required"):
            return "pending"  # async methods confirm later, in async_payment_succeeded
        link = await self._repo.mark_paid(tenant_id, session["id"])
        if link is None:
            return "unknown_session"
        payment = PaymentReceived(
            event_id=domain.event_id(tenant_id, session["id"], "paid"),
            tenant_id=tenant_id,
            correlation_id=event["id"],
            conversation_id=link["conversation_id"],
            tool_call_id=link["tool_call_id"],
            provider_event_id=event["id"],
            checkout_session_id=session["id"],
            amount_minor=session.get("amount_total", link["amount_minor"]),
            currency=session.get("currency", link["currency"]),
        )
        # Published on every delivery (same ids): a crash after the commit above loses nothing.
        await self._bus.publish(payment, msg_id=f"payment:{tenant_id}:{session['id']}")
        return "payment_received"


@dataclass(frozen=True)
class Subscription:
    """Which events one endpoint of a tenant wants (no URL, no secret: those are read fresh
    for each delivery)."""

    endpoint_id: str
    event_types: frozenset[str]

    def wants(self, event_type: str) -> bool:
        return "*" in self.event_types or event_type in self.event_types


class SubscriptionCache:
    """Each tenant's endpoint subscriptions, kept ``ttl_s`` seconds.

    Every public event of every tenant is checked against them, and most tenants have none:
    without the cache that is a database query per event. Changes made through this process's
    API invalidate the tenant at once (:meth:`invalidate`); another replica's changes apply
    within ``ttl_s``. A load that started before an invalidation is not kept."""

    def __init__(
        self,
        load: Callable[[str], Awaitable[list[WebhookEndpoint]]],
        ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._load = load
        self._ttl = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, list[Subscription]]] = {}
        self._generation: dict[str, int] = {}

    async def of(self, tenant_id: str) -> list[Subscription]:
        now = self._clock()
        entry = self._entries.get(tenant_id)
        if entry is not None and now - entry[0] < self._ttl:
            return entry[1]
        generation = self._generation.get(tenant_id, 0)
        found = [Subscription(e.id, frozenset(e.event_types)) for e in await self._load(tenant_id)]
        if self._generation.get(tenant_id, 0) == generation:
            self._entries[tenant_id] = (now, found)
        return found

    def invalidate(self, tenant_id: str) -> None:
        self._entries.pop(tenant_id, None)
        self._generation[tenant_id] = self._generation.get(tenant_id, 0) + 1


class OutgoingWebhooks:
    def __init__(
        self,
        repo: ToolsRepository,
        bus: Bus,
        sender: WebhookSender,
        archive: DeadLetterArchive,
        subscriptions: SubscriptionCache | None = None,
    ):
        self._repo = repo
        self._bus = bus
        self._sender = sender
        self._archive = archive
        self._subscriptions = subscriptions or SubscriptionCache(repo.endpoints)

    async def fan_out(self, event: Message) -> None:
        """One delivery command per endpoint that subscribed to this event's type."""
        if event.type not in PUBLIC_EVENTS:
            return
        for endpoint in await self._subscriptions.of(event.tenant_id):
            if not endpoint.wants(event.type):
                continue
            delivery_id = domain.stable_id(
                event.tenant_id, endpoint.endpoint_id, str(event.event_id)
            )
            await self._bus.publish(
                event.caused(
                    DeliverWebhook,
                    delivery_id=delivery_id,
                    endpoint_id=endpoint.endpoint_id,
                    event_type=event.type,
                    event=event.model_dump(mode="json"),
                ).model_copy(update={"event_id": domain.event_id(delivery_id)}),
                msg_id=f"webhook:{delivery_id}",
            )

    async def deliver(self, command: DeliverWebhook) -> None:
        """POST the event, signed; any failure raises so the consumer policy retries it."""
        # Read fresh, not from the cache: a changed URL or secret applies to the next attempt.
        endpoints = {e.id: e for e in await self._repo.endpoints(command.tenant_id)}
        endpoint = endpoints.get(command.endpoint_id)
        if endpoint is None:
            log.info("webhook endpoint %s was removed; dropping delivery", command.endpoint_id)
            return
        body = json.dumps(
            {
                "id": command.delivery_id,
                "type": command.event_type,
                "tenant_id": command.tenant_id,
                "data": command.event,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        try:
            await self._sender.send(
                endpoint.url, endpoint.secret, command.delivery_id, command.event_type, body
            )
        except ProviderRejectedError as exc:  # a refused target: retrying cannot help
            raise PermanentError(str(exc), reason="webhook_target_refused") from exc

    async def dead_letters(self, tenant_id: str, limit: int = 100) -> list[dict[str, Any]]:
        found = await self._archive.letters(tenant_id, DELIVERY_CONSUMER, limit)
        return [_describe(seq, letter) for seq, letter in found]

    async def replay(self, tenant_id: str, seq: int) -> str:
        """Deliver a dead-lettered webhook again (as a new command); returns its delivery id."""
        letter = await self._archive.letter(seq)
        if letter is None or letter.tenant_id != tenant_id or letter.origin != DELIVERY_CONSUMER:
            raise DeadLetterNotFoundError(seq)
        command = DeliverWebhook.model_validate_json(letter.payload)
        await self._bus.publish(command, msg_id=f"webhook-replay:{seq}")
        return command.delivery_id


def _describe(seq: int, letter: DeadLettered) -> dict[str, Any]:
    try:
        command = DeliverWebhook.model_validate_json(letter.payload)
        delivery = {"delivery_id": command.delivery_id, "endpoint_id": command.endpoint_id}
        delivery["event_type"] = command.event_type
    except ValueError:
        delivery = {}
    return {
        "seq": seq,
        "reason": letter.reason,
        "error": letter.error,
        "attempts": letter.attempts,
        "occurred_at": letter.occurred_at,
        **delivery,
    }
