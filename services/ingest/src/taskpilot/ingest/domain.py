"""Meta's WhatsApp Cloud API webhook, understood: signatures and payload splitting. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from taskpilot.contracts.whatsapp import (
    ButtonContent,
    ContactsContent,
    InteractiveReplyContent,
    LocationContent,
    MediaContent,
    MessageContext,
    ReactionContent,
    SendWhatsAppMessage,
    TextContent,
    UnknownContent,
    UnsupportedContent,
    WhatsAppMessageReceived,
    WhatsAppStatusReceived,
)

MEDIA_KINDS = ("image", "audio", "video", "document", "sticker")
KNOWN_STATUSES = {"sent", "delivered", "read", "failed", "played", "deleted"}
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


class MalformedWebhookError(ValueError):
    """The body is signed correctly but is not a WhatsApp webhook we can read."""


def signature_of(raw_body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def signature_valid(raw_body: bytes, header: str | None, app_secret: str) -> bool:
    """``X-Hub-Signature-256`` check over the raw body, in constant time."""
    if not header or not header.startswith("sha256=") or not header.isascii():
        return False
    return hmac.compare_digest(signature_of(raw_body, app_secret).encode(), header.encode())


def lead_token(raw: str) -> str:
    """A lead id safe as a subject token (wa_ids are digits; user ids carry dots and may be
    long: a long one keeps a prefix and a hash of the whole, so two never merge)."""
    token = _NOT_TOKEN.sub("_", raw)
    if not token:
        raise MalformedWebhookError("message without a sender id")
    if len(token) > 64:
        token = f"{token[:47]}_{hashlib.sha256(raw.encode()).hexdigest()[:16]}"
    return token


@dataclass
class Unrouted:
    phone_number_id: str
    reason: str
    count: int


@dataclass
class Rejected:
    """One update of a batch that cannot be read; the rest of the batch goes on."""

    reason: str
    item: Any


@dataclass(frozen=True)
class Outgoing:
    """One update of a webhook, ready for the bus: its contract, ``Nats-Msg-Id`` and bytes."""

    message: WhatsAppMessageReceived | WhatsAppStatusReceived
    msg_id: str
    body: bytes


@dataclass
class ParsedWebhook:
    messages: list[WhatsAppMessageReceived] = field(default_factory=list)
    statuses: list[WhatsAppStatusReceived] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    unrouted: list[Unrouted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    ignored_fields: list[str] = field(default_factory=list)


def _ts(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_content(message: dict[str, Any]) -> Any:
    """The typed content of one inbound message; anything unreadable is kept raw."""
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        return UnknownContent(type="missing", raw=message)
    if kind == "contacts" and _dicts(message.get("contacts")):
        return ContactsContent(contacts=_dicts(message["contacts"]))
    body = message.get(kind, {})
    if not isinstance(body, dict):
        return UnknownContent(type=kind, raw=message)
    try:
        return _content(kind, body, message)
    except (KeyError, TypeError, ValueError):  # pydantic's ValidationError is a ValueError
        return UnknownContent(type=kind, raw=message)


def _content(kind: str, body: dict[str, Any], message: dict[str, Any]) -> Any:
    if kind == "text":
        return TextContent(body=body["body"])
    if kind in MEDIA_KINDS:
        return MediaContent(
            kind=kind,
            media_id=body["id"],
            mime_type=body.get("mime_type"),
            sha256=body.get("sha256"),
            caption=body.get("caption"),
            filename=body.get("filename"),
            voice=bool(body.get("voice", False)),
            animated=bool(body.get("animated", False)),
        )
    if kind == "interactive" and body.get("type") in ("button_reply", "list_reply"):
        reply = body[body["type"]]
        return InteractiveReplyContent(
            kind=body["type"],
            reply_id=reply["id"],
            title=reply.get("title", ""),
            description=reply.get("description"),
        )
    if kind == "button":
        return ButtonContent(payload=body.get("payload"), text=body["text"])
    if kind == "location":
        fields = {k: body[k] for k in LocationContent.model_fields if k != "kind" and k in body}
        return LocationContent(**fields)
    if kind == "reaction":
        return ReactionContent(message_id=body["message_id"], emoji=body.get("emoji") or None)
    if kind == "unsupported":
        return UnsupportedContent(errors=_dicts(message.get("errors")), type=_str(body.get("type")))
    return UnknownContent(type=kind, raw=message)


def split_webhook(payload: Any, tenant_id: str, numbers_of_tenant: set[str]) -> ParsedWebhook:
    """One contract message per inbound message and per status, for this tenant's numbers.

    A body that is not a webhook at all raises :class:`MalformedWebhookError`; one unreadable
    update inside a good batch is set aside in ``rejected`` and the others go on.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        raise MalformedWebhookError("not a WhatsApp webhook: no 'entry' list")
    parsed = ParsedWebhook()
    for entry in payload["entry"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes", []), list):
            parsed.rejected.append(Rejected("entry is not an object with a 'changes' list", entry))
            continue
        for change in entry.get("changes", []):
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                parsed.rejected.append(Rejected("change without a 'value' object", change))
                continue
            if change.get("field") not in (None, "messages"):
                parsed.ignored_fields.append(str(change.get("field")))
                continue
            _split_value(change["value"], tenant_id, numbers_of_tenant, parsed)
    return parsed


def _split_value(
    value: dict[str, Any], tenant_id: str, numbers: set[str], parsed: ParsedWebhook
) -> None:
    number = _dict(value.get("metadata")).get("phone_number_id")
    number = str(number) if isinstance(number, str | int) else ""
    messages = value.get("messages") or []
    statuses = value.get("statuses") or []
    parsed.errors.extend(_dicts(value.get("errors")))
    if not isinstance(messages, list) or not isinstance(statuses, list):
        parsed.rejected.append(Rejected("'messages' and 'statuses' must be lists", value))
        return
    if number not in numbers:
        if messages or statuses:
            parsed.unrouted.append(
                Unrouted(
                    number or "(missing)", "unknown_phone_number", len(messages) + len(statuses)
                )
            )
        return
    names: dict[str, str] = {}
    for contact in _dicts(value.get("contacts")):
        name = _str(_dict(contact.get("profile")).get("name"))
        for key in ("wa_id", "user_id"):
            if isinstance(contact.get(key), str) and name:
                names[contact[key]] = name
    for message in messages:
        try:
            received = _message(message, tenant_id, number, names)
            body = received.to_bytes()  # e.g. half an emoji (a lone surrogate) cannot travel
            parsed.messages.append(received)
            parsed.outgoing.append(Outgoing(received, received.wamid, body))
        except (MalformedWebhookError, KeyError, TypeError, ValueError) as exc:
            parsed.rejected.append(Rejected(f"unreadable message: {exc}", message))
    for status in statuses:
        try:
            update = _status(status, tenant_id, number)
            body = update.to_bytes()
            parsed.statuses.append(update)
            parsed.outgoing.append(Outgoing(update, status_msg_id(update), body))
        except (MalformedWebhookError, KeyError, TypeError, ValueError) as exc:
            parsed.rejected.append(Rejected(f"unreadable status: {exc}", status))


def _message(
    message: Any, tenant_id: str, number: str, names: dict[str, str]
) -> WhatsAppMessageReceived:
    if not isinstance(message, dict) or not isinstance(message.get("id"), str) or not message["id"]:
        raise MalformedWebhookError("message without an id")
    sender = message.get("from") or message.get("from_user_id")
    if not isinstance(sender, str) or not sender:
        raise MalformedWebhookError("message without a sender")
    context = message.get("context")
    return WhatsAppMessageReceived(
        event_id=inbound_event_id(tenant_id, message["id"]),
        tenant_id=tenant_id,
        correlation_id=message["id"],
        wamid=message["id"],
        phone_number_id=number,
        lead=lead_token(sender),
        lead_name=names.get(sender),
        wa_timestamp=_ts(message.get("timestamp")),
        content=parse_content(message),
        context=_context(context) if isinstance(context, dict) else None,
    )


def _context(context: dict[str, Any]) -> MessageContext | None:
    try:
        return MessageContext.model_validate(context)
    except ValueError:
        return None  # a context we cannot read never costs the message itself


def _status(status: Any, tenant_id: str, number: str) -> WhatsAppStatusReceived:
    if not isinstance(status, dict) or not isinstance(status.get("id"), str) or not status["id"]:
        raise MalformedWebhookError("status without an id")
    recipient = status.get("recipient_id") or status.get("recipient_user_id")
    if not isinstance(recipient, str) or not recipient:
        raise MalformedWebhookError("status without a recipient")
    state = status.get("status")
    state = state if isinstance(state, str) and state in KNOWN_STATUSES else "unknown"
    return WhatsAppStatusReceived(
        event_id=inbound_event_id(tenant_id, f"{status['id']}:{state}"),
        tenant_id=tenant_id,
        correlation_id=status["id"],
        wamid=status["id"],
        phone_number_id=number,
        lead=lead_token(recipient),
        status=state,
        wa_timestamp=_ts(status.get("timestamp")),
        conversation=status.get("conversation")
        if isinstance(status.get("conversation"), dict)
        else None,
        pricing=status.get("pricing") if isinstance(status.get("pricing"), dict) else None,
        errors=_dicts(status.get("errors")),
    )


_INBOUND_EVENTS = uuid.UUID("5b6f7a0e-2f4d-4c38-9d0e-7c1a1f0e9b21")


def inbound_event_id(tenant_id: str, key: str) -> uuid.UUID:
    """One WhatsApp update, one event id, however often Meta delivers it (a name-based uuid:
    also cheaper on the hot path than a random one, which reads the OS's entropy)."""
    return uuid.uuid5(_INBOUND_EVENTS, f"{tenant_id}/{key}")


def status_msg_id(status: WhatsAppStatusReceived) -> str:
    return f"{status.wamid}:{status.status}"


# -- outbound: our commands in Meta's send format ----------------------------------------


def graph_body(command: SendWhatsAppMessage) -> dict[str, Any]:
    """The Graph API ``/messages`` body for a send command."""
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": command.to,
    }
    if command.reply_to_wamid:
        body["context"] = {"message_id": command.reply_to_wamid}
    if command.text is not None:
        return body | {"type": "text", "text": {"preview_url": False, "body": command.text}}
    if command.template is not None:
        t = command.template
        template: dict[str, Any] = {"name": t.name, "language": {"code": t.language}}
        if t.components:
            template["components"] = t.components
        return body | {"type": "template", "template": template}
    assert command.interactive is not None
    i = command.interactive
    if i.buttons:
        action: dict[str, Any] = {
            "buttons": [
                {"type": "reply", "reply": {"id": b.id, "title": b.title}} for b in i.buttons
            ]
        }
        kind = "button"
    else:
        action = {
            "button": i.list_button,
            "sections": [s.model_dump(exclude_none=True) for s in i.sections],
        }
        kind = "list"
    return body | {
        "type": "interactive",
        "interactive": {"type": kind, "body": {"text": i.body}, "action": action},
    }


# -- outbound: Graph API error codes -> what to do ---------------------------------------

THROUGHPUT_LIMIT = 130429
PAIR_RATE_LIMIT = 131056
OUTSIDE_WINDOW = 131047
APP_RATE_LIMIT = 4
WABA_RATE_LIMIT = 80007
RETRYABLE_CODES = {
    THROUGHPUT_LIMIT,
    PAIR_RATE_LIMIT,
    APP_RATE_LIMIT,
    WABA_RATE_LIMIT,
    131000,
    131016,
    2,
    1,
}
MAX_RETRY_DELAY_S = 15 * 60


def retry_delay(code: int | None, attempt: int, base: float = 1.0) -> float:
    """Seconds to wait before retrying a send that failed with ``code`` (on ``error.code``)."""
    if code == PAIR_RATE_LIMIT:  # Meta: 4^X seconds, X from 0, between messages to one user
        return float(min(4 ** (attempt - 1), MAX_RETRY_DELAY_S))
    return min(base * 2 ** (attempt - 1), 60.0)


def is_retryable(code: int | None, http_status: int | None) -> bool:
    if code in RETRYABLE_CODES:
        return True
    return code is None and (http_status is None or http_status >= 500 or http_status == 429)
