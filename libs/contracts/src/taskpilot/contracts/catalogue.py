"""The catalogue of public messages and their JSON Schemas (``taskpilot contracts export``)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from taskpilot.contracts.conversation import CONVERSATION_EVENTS
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.contracts.envelope import Message
from taskpilot.contracts.inference import (
    GenerateReply,
    ReplyGenerated,
    TenantBudgetExceeded,
    TenantBudgetNearCap,
)
from taskpilot.contracts.knowledge import KnowledgeSearchResult, KnowledgeUpdated, SearchKnowledge
from taskpilot.contracts.tools import (
    BookingCancelled,
    DeliverWebhook,
    ExecuteToolCall,
    JobCompleted,
    JobProgressed,
    PaymentReceived,
    RunJob,
    SlotBooked,
    ToolCallCompleted,
)
from taskpilot.contracts.whatsapp import (
    MarkMessageRead,
    SendWhatsAppMessage,
    WhatsAppMediaStored,
    WhatsAppMessageReceived,
    WhatsAppMessageSent,
    WhatsAppSendFailed,
    WhatsAppStatusReceived,
)

MESSAGES: tuple[type[Message], ...] = (
    WhatsAppMessageReceived,
    WhatsAppStatusReceived,
    WhatsAppMediaStored,
    SendWhatsAppMessage,
    MarkMessageRead,
    WhatsAppMessageSent,
    WhatsAppSendFailed,
    GenerateReply,
    ReplyGenerated,
    TenantBudgetNearCap,
    TenantBudgetExceeded,
    SearchKnowledge,
    KnowledgeUpdated,
    ExecuteToolCall,
    ToolCallCompleted,
    SlotBooked,
    BookingCancelled,
    PaymentReceived,
    DeliverWebhook,
    RunJob,
    JobProgressed,
    JobCompleted,
    DeadLettered,
    *CONVERSATION_EVENTS,
)

BY_TYPE: dict[str, type[Message]] = {m.TYPE: m for m in MESSAGES}


def json_schemas() -> dict[str, dict[str, object]]:
    schemas: dict[str, dict[str, object]] = {}
    for message in MESSAGES:
        schema = message.model_json_schema()
        schema["x-subject"] = message.CHANNEL.pattern
        stream = message.CHANNEL.stream
        schema["x-stream"] = stream.name if stream else None
        schema["x-schema-version"] = message.SCHEMA_VERSION
        schemas[f"{message.TYPE}.v{message.SCHEMA_VERSION}"] = schema
    schemas["KnowledgeSearchResult.v1"] = KnowledgeSearchResult.model_json_schema()
    return schemas


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


class _Head(BaseModel):
    type: str


class OneOf:
    """Parses any of several message types by their ``type`` field (one consumer, one stream).

    Types it does not know are skipped (``None``) when ``skip_unknown``: newer producers may
    add event types that an older reader has no use for.
    """

    def __init__(self, *types: type[Message], skip_unknown: bool = True):
        self.by_type = {t.TYPE: t for t in types}
        self.TYPE = "|".join(self.by_type)
        self.skip_unknown = skip_unknown

    def model_validate_json(self, data: bytes | str) -> Message | None:
        head = _Head.model_validate_json(data)
        cls = self.by_type.get(head.type)
        if cls is None:
            if self.skip_unknown:
                return None
            raise ValueError(f"unexpected message type {head.type!r}")
        return cls.model_validate_json(data)
