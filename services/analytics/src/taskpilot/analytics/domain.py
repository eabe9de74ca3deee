"""Pure decisions of analytics: who may do what, the figures derived from raw totals, the
change notices of the live stream, and where a dead letter goes back to. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import date, datetime, timedelta
from typing import Any

from taskpilot.contracts import conversation as ev
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.contracts.subjects import ALL_STREAMS
from taskpilot.contracts.tools import BookingCancelled, PaymentReceived, SlotBooked
from taskpilot.tenancy.access import (
    GRANTS,
    Action,
    ForbiddenError,
    NotAuthenticatedError,
    Principal,
    Role,
    claim,
    principal_from_claims,
)

__all__ = [
    "GRANTS",
    "Action",
    "ForbiddenError",
    "NotAuthenticatedError",
    "Principal",
    "Role",
    "claim",
    "principal_from_claims",
]

Projectable = ev.ConversationEvent | SlotBooked | BookingCancelled | PaymentReceived | DeadLettered
"""Every event a read model is built from."""

NOTIFY_CHANNEL = "taskpilot_analytics"
"""PostgreSQL NOTIFY channel of committed read-model changes."""

CLOSED_AFTER_HOURS = 24
"""A conversation is closed when WhatsApp's customer-service window is: 24 h after the lead's
last message (or when Meta said so). It opens again when the lead writes."""


def effective_status(row: dict[str, Any], now: datetime) -> str:
    """bot, human or closed; the same rule as the queries' SQL (``queries.EFFECTIVE_STATUS``)."""
    last_in = row.get("last_in_at")
    if isinstance(last_in, str):
        last_in = datetime.fromisoformat(last_in)
    if row.get("window_closed") or (
        last_in is not None and last_in < now - timedelta(hours=CLOSED_AFTER_HOURS)
    ):
        return "closed"
    return str(row["status"])


# -- who may do what: shared by every service (taskpilot.tenancy.access) ---------------------


# -- figures --------------------------------------------------------------------------------


def ratio(part: float | None, whole: float | None) -> float | None:
    return None if not whole else (part or 0) / whole


def figures(raw: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's derived figures from the raw totals of a period.

    Resolved: the assistant replied and no human came in (neither a handoff by the assistant
    nor a takeover by a person). Handoff rate: the share the assistant handed to a human."""
    cost = raw["cost_usd"] or 0.0
    return {
        "resolution_rate": ratio(raw["resolved"], raw["conversations"]),
        "handoff_rate": ratio(raw["handed_off"], raw["conversations"]),
        "cache_hit_rate": ratio(raw["cache_hits"], raw["bot_answers"]),
        "cost_per_reply_usd": ratio(cost, raw["bot_replies"]),
        "cost_per_conversation_usd": ratio(cost, raw["conversations"]),
        "cost_per_booking_usd": ratio(cost, raw["bookings"]),
    }


# -- live stream ----------------------------------------------------------------------------


def change_notice(event: ev.ConversationEvent | DeadLettered, row: dict[str, Any] | None) -> dict:
    """What listeners hear after a projection commits (fits NOTIFY's 8000 bytes)."""
    if isinstance(event, DeadLettered):
        return {
            "kind": "dead_letter",
            "tenant_id": event.tenant_id,
            "id": str(event.event_id),
            "reason": event.reason,
            "origin": event.origin,
        }
    notice: dict[str, Any] = {
        "kind": "erased" if isinstance(event, ev.LeadErased) else "conversation",
        "tenant_id": event.tenant_id,
        "conversation_id": event.conversation_id,
        "event": event.type,
    }
    if row is not None:
        notice["conversation"] = json.loads(json.dumps(row, default=_plain))
    return notice


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


# -- dead letters ---------------------------------------------------------------------------


class NotReplayableError(Exception):
    """A dead letter that cannot be published again (a webhook body that never had a subject)."""


def replay_subject(letter_subject: str | None, stream: str | None) -> str:
    """The subject to publish a dead letter's message to again.

    A partitioned stream stores ``wa.inp.{p}.{tenant}.{lead}.{kind}``; publishing there would
    match no stream, so the partition token is dropped and the source prefix restored.
    """
    if not letter_subject or not stream:
        raise NotReplayableError("the dead letter has no original subject or stream")
    for s in ALL_STREAMS:
        p = s.partitioning
        if s.name == stream and p is not None and letter_subject.startswith(p.stored_prefix + "."):
            rest = letter_subject[len(p.stored_prefix) + 1 :].split(".", 1)[1]
            return p.source.split(".*")[0] + "." + rest
    return letter_subject


def replay_msg_id(letter_id: str, replays_before: int) -> str:
    """A new Nats-Msg-Id per replay, so JetStream's duplicate window never drops it."""
    return f"replay:{letter_id}:{replays_before + 1}"


def webhook_url(public_base: str, tenant_id: str) -> str:
    """The callback URL to paste into Meta's dashboard for this tenant."""
    return f"{public_base.rstrip('/')}/webhooks/whatsapp/{tenant_id}"


# -- sandbox chat ---------------------------------------------------------------------------


def sandbox_webhook(
    phone_number_id: str, lead: str, text: str, wamid: str, name: str, sent_at: int
) -> bytes:
    """A text message webhook as Meta sends it, for the dashboard's sandbox chat."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": name}, "wa_id": lead}],
        "messages": [
            {
                "from": lead,
                "id": wamid,
                "timestamp": str(sent_at),
                "type": "text",
                "text": {"body": text},
            }
        ],
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "sandbox", "changes": [{"value": value, "field": "messages"}]}],
    }
    return json.dumps(body).encode()


def meta_signature(body: bytes, app_secret: str) -> str:
    """``X-Hub-Signature-256`` as Meta computes it: HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
