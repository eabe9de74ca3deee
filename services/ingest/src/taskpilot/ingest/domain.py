"""Meta's WhatsApp Cloud API webhook, understood: signatures and payload splitting. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from taskpilot.contracts.whatsapp import (
    ButtonContent,
    ContactsContent,
    InteractiveReplyContent,
    LocationContent,
    MediaContent,
    MessageContext,
    ReactionContent,
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
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(signature_of(raw_body, app_secret), header)


def lead_token(raw: str) -> str:
    """A lead id safe as a subject token (wa_ids are digits; user ids may carry dots)."""
    token = _NOT_TOKEN.sub("_", raw)[:64]
    if not token:
        raise MalformedWebhookError("message without a sender id")
    return token


@dataclass
class Unrouted:
    phone_number_id: str
    reason: str
    count: int


@dataclass
class ParsedWebhook:
    messages: list[WhatsAppMessageReceived] = field(default_factory=list)
    statuses: list[WhatsAppStatusReceived] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    unrouted: list[Unrouted] = field(default_factory=list)
    ignored_fields: list[str] = field(default_factory=list)


def _ts(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC)


def parse_content(message: dict[str, Any]) -> Any:
    kind = message.get("type", "")
    body = message.get(kind) if isinstance(message.get(kind), dict) else {}
    assert isinstance(body, dict)
    try:
        if kind == "text":
            return TextContent(body=str(body.get("body", "")))
        if kind in MEDIA_KINDS:
            return MediaContent(
                kind=kind,
                media_id=str(body["id"]),
                mime_type=body.get("mime_type"),
                sha256=body.get("sha256"),
                caption=body.get("caption"),
                filename=body.get("filename"),
                voice=bool(body.get("voice", False)),
                animated=bool(body.get("animated", False)),
            )
        if kind == "interactive":
            sub = body.get("type", "")
            reply = body.get(sub, {})
            if sub in ("button_reply", "list_reply"):
                return InteractiveReplyContent(
                    kind=sub,
                    reply_id=str(reply["id"]),
                    title=str(reply.get("title", "")),
                    description=reply.get("description"),
                )
        if kind == "button":
            return ButtonContent(payload=body.get("payload"), text=str(body.get("text", "")))
        if kind == "location":
            return LocationContent(
                **{
                    k: body.get(k)
                    for k in LocationContent.model_fields
                    if k != "kind" and k in body
                }
            )
        if kind == "contacts":
            return ContactsContent(contacts=list(message.get("contacts", [])))
        if kind == "reaction":
            return ReactionContent(
                message_id=str(body["message_id"]), emoji=body.get("emoji") or None
            )
        if kind == "unsupported":
            return UnsupportedContent(errors=list(message.get("errors", [])))
    except (KeyError, TypeError, ValidationError):
        pass  # a known type in an unknown shape is kept raw, never dropped
    return UnknownContent(type=str(kind or "missing"), raw=message)


def split_webhook(payload: Any, tenant_id: str, numbers_of_tenant: set[str]) -> ParsedWebhook:
    """One contract message per inbound message and per status, for this tenant's numbers."""
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        raise MalformedWebhookError("not a WhatsApp webhook: no 'entry' list")
    parsed = ParsedWebhook()
    for entry in payload["entry"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes", []), list):
            raise MalformedWebhookError("entry is not an object with a 'changes' list")
        for change in entry.get("changes", []):
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                raise MalformedWebhookError("change without a 'value' object")
            if change.get("field") not in (None, "messages"):
                parsed.ignored_fields.append(str(change.get("field")))
                continue
            _split_value(change["value"], tenant_id, numbers_of_tenant, parsed)
    return parsed


def _split_value(
    value: dict[str, Any], tenant_id: str, numbers: set[str], parsed: ParsedWebhook
) -> None:
    number = str((value.get("metadata") or {}).get("phone_number_id", ""))
    messages = value.get("messages") or []
    statuses = value.get("statuses") or []
    parsed.errors.extend(e for e in value.get("errors") or [] if isinstance(e, dict))
    if not isinstance(messages, list) or not isinstance(statuses, list):
        raise MalformedWebhookError("'messages' and 'statuses' must be lists")
    if number not in numbers:
        if messages or statuses:
            parsed.unrouted.append(
                Unrouted(
                    number or "(missing)", "unknown_phone_number", len(messages) + len(statuses)
                )
            )
        return
    names = {
        str(c.get("wa_id") or c.get("user_id")): (c.get("profile") or {}).get("name")
        for c in value.get("contacts") or []
        if isinstance(c, dict)
    }
    for message in messages:
        parsed.messages.append(_message(message, tenant_id, number, names))
    for status in statuses:
        parsed.statuses.append(_status(status, tenant_id, number))


def _message(
    message: Any, tenant_id: str, number: str, names: dict[str, Any]
) -> WhatsAppMessageReceived:
    if not isinstance(message, dict) or not message.get("id"):
        raise MalformedWebhookError("message without an id")
    sender = str(message.get("from") or message.get("from_user_id") or "")
    context = message.get("context")
    return WhatsAppMessageReceived(
        tenant_id=tenant_id,
        correlation_id=str(message["id"]),
        wamid=str(message["id"]),
        phone_number_id=number,
        lead=lead_token(sender),
        lead_name=names.get(sender),
        wa_timestamp=_ts(message.get("timestamp")),
        content=parse_content(message),
        context=MessageContext.model_validate(context) if isinstance(context, dict) else None,
    )


def _status(status: Any, tenant_id: str, number: str) -> WhatsAppStatusReceived:
    if not isinstance(status, dict) or not status.get("id"):
        raise MalformedWebhookError("status without an id")
    state = str(status.get("status", "unknown"))
    return WhatsAppStatusReceived(
        tenant_id=tenant_id,
        correlation_id=str(status["id"]),
        wamid=str(status["id"]),
        phone_number_id=number,
        lead=lead_token(str(status.get("recipient_id") or status.get("recipient_user_id") or "")),
        status=state if state in KNOWN_STATUSES else "unknown",
        wa_timestamp=_ts(status.get("timestamp")),
        conversation=status.get("conversation"),
        pricing=status.get("pricing"),
        errors=[e for e in status.get("errors") or [] if isinstance(e, dict)],
    )


def status_msg_id(status: WhatsAppStatusReceived) -> str:
    return f"{status.wamid}:{status.status}"


# -- outbound: Graph API error codes -> what to do ---------------------------------------

THROUGHPUT_LIMIT = 130429
PAIR_RATE_LIMIT = 131056
OUTSIDE_WINDOW = 131047
RETRYABLE_CODES = {THROUGHPUT_LIMIT, PAIR_RATE_LIMIT, 131000, 131016, 2, 1}


def retry_delay(code: int | None, attempt: int, base: float = 1.0) -> float:
    """Seconds to wait before retrying a send that failed with ``code`` (on ``error.code``)."""
    if code == PAIR_RATE_LIMIT:
        return float(4**attempt)  # Meta: wait 4^X seconds between messages to the same user
    return min(base * 2 ** (attempt - 1), 60.0)


def is_retryable(code: int | None, http_status: int | None) -> bool:
    if code in RETRYABLE_CODES:
        return True
    return code is None and (http_status is None or http_status >= 500)
