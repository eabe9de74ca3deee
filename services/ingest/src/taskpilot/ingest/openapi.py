"""The OpenAPI description of the webhook POST, which :class:`taskpilot.ingest.api.IngestHttp`
serves outside FastAPI's routing (so FastAPI cannot describe it); schemathesis fuzzes ingest
from this document."""

from __future__ import annotations

from typing import Any


def _detail(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


WEBHOOK_SCHEMAS: dict[str, Any] = {
    "Accepted": {
        "title": "Accepted",
        "type": "object",
        "required": ["published", "duplicates", "dead_lettered"],
        "properties": {
            "published": {"type": "integer", "minimum": 0},
            "duplicates": {"type": "integer", "minimum": 0},
            "dead_lettered": {"type": "integer", "minimum": 0},
        },
    },
    "WhatsAppWebhook": {
        "title": "WhatsAppWebhook",
        "description": "Meta's WhatsApp Business Account webhook, as far as ingest reads it; "
        "the signature covers the raw bytes, and anything else in it is kept or ignored",
        "type": "object",
        "required": ["object", "entry"],
        "properties": {
            "object": {"type": "string", "example": "whatsapp_business_account"},
            "entry": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "changes": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Change"},
                        },
                    },
                },
            },
        },
    },
    "Change": {
        "title": "Change",
        "type": "object",
        "required": ["value"],
        "properties": {
            "field": {"type": "string", "example": "messages"},
            "value": {
                "type": "object",
                "properties": {
                    "messaging_product": {"type": "string"},
                    "metadata": {
                        "type": "object",
                        "properties": {
                            "display_phone_number": {"type": "string"},
                            "phone_number_id": {"type": "string"},
                        },
                    },
                    "contacts": {"type": "array", "items": {"type": "object"}},
                    "messages": {"type": "array", "items": {"$ref": "#/components/schemas/Update"}},
                    "statuses": {"type": "array", "items": {"$ref": "#/components/schemas/Update"}},
                    "errors": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
    "Update": {
        "title": "Update",
        "description": "A message (from, id, timestamp, type and its object) or a status "
        "(id, status, recipient_id, timestamp)",
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "from": {"type": "string"},
            "recipient_id": {"type": "string"},
            "timestamp": {"type": "string"},
            "type": {
                "type": "string",
                "enum": [
                    "text",
                    "image",
                    "audio",
                    "video",
                    "document",
                    "sticker",
                    "interactive",
                    "button",
                    "location",
                    "contacts",
                    "reaction",
                    "unsupported",
                    "order",
                ],
            },
            "status": {"type": "string"},
            "text": {"type": "object", "properties": {"body": {"type": "string"}}},
            "image": {"type": "object", "properties": {"id": {"type": "string"}}},
            "context": {"type": "object"},
        },
    },
    "Problem": {
        "title": "Problem",
        "type": "object",
        "required": ["detail"],
        "properties": {"detail": {"type": "string"}},
    },
}

WEBHOOK_POST_OPENAPI: dict[str, Any] = {
    "tags": ["whatsapp"],
    "summary": "Receive",
    "description": "Signed webhook from Meta; 200 once every update in it is stored on the bus. "
    "A signed body that is not a webhook we can read is answered 200 and dead-lettered "
    "(Meta retries anything else for 7 days).",
    "operationId": "receive_webhooks_whatsapp__tenant_id__post",
    "parameters": [
        {
            "name": "tenant_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "title": "Tenant Id"},
        },
        {
            "name": "X-Hub-Signature-256",
            "in": "header",
            "required": False,
            "description": "'sha256=' + hex HMAC-SHA256 of the raw body with the app secret",
            "schema": {"type": "string"},
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/WhatsAppWebhook"}}
        },
    },
    "responses": {
        "200": {
            "description": "Every update stored on the bus (or recorded as a dead letter)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
        },
        "401": _detail("Missing or wrong X-Hub-Signature-256"),
        "404": _detail("Unknown tenant"),
        "413": _detail("Body larger than the limit (3 MB by default)"),
        "422": _detail("A tenant id that cannot be one"),
    },
}
