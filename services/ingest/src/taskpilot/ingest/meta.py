"""Build webhook bodies the way Meta sends them (for the sandbox chat, tests and benchmarks)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from taskpilot.ingest.domain import signature_of


def new_wamid() -> str:
    return "wamid." + uuid.uuid4().hex.upper()


def message_value(
    phone_number_id: str,
    messages: list[dict[str, Any]],
    contacts: list[dict[str, Any]] | None = None,
    display_phone_number: str = "15550000000",
) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
        "contacts": contacts or [],
        "messages": messages,
    }


def text_message(sender: str, text: str, wamid: str | None = None) -> dict[str, Any]:
    return {
        "from": sender,
        "id": wamid or new_wamid(),
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": text},
    }


def media_message(
    sender: str,
    kind: str,
    media_id: str,
    mime_type: str,
    sha256: str | None = None,
    wamid: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An image, audio, video, document or sticker message (``extra``: caption, filename,
    voice, animated); ``sha256`` is base64, as webhooks carry it."""
    media: dict[str, Any] = {"id": media_id, "mime_type": mime_type, **extra}
    if sha256 is not None:
        media["sha256"] = sha256
    return {
        "from": sender,
        "id": wamid or new_wamid(),
        "timestamp": str(int(time.time())),
        "type": kind,
        kind: media,
    }


def webhook(*values: dict[str, Any], waba_id: str = "102290129340398") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": v, "field": "messages"} for v in values]}],
    }


def text_webhook(
    phone_number_id: str, sender: str, text: str, wamid: str | None = None, name: str = "Lead"
) -> dict[str, Any]:
    return webhook(
        message_value(
            phone_number_id,
            [text_message(sender, text, wamid)],
            [{"profile": {"name": name}, "wa_id": sender}],
        )
    )


def signed(payload: dict[str, Any] | bytes, app_secret: str) -> tuple[bytes, dict[str, str]]:
    """The raw body and the headers Meta would send with it."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return body, {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": signature_of(body, app_secret),
    }
