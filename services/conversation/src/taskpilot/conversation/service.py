"""Conversation use cases: load, decide, save. Synchronous (eventsourcing is); the handlers
call them through ``asyncio.to_thread``.

Concurrent writers of one conversation are resolved by optimistic concurrency: the second
save raises ``IntegrityError``; we reload and decide again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from taskpilot.contracts.inference import ReplyGenerated
from taskpilot.contracts.whatsapp import (
    WhatsAppMessageReceived,
    WhatsAppMessageSent,
    WhatsAppSendFailed,
)
from taskpilot.conversation.domain import Conversation, conversation_id

RETRIES = 5


class ConversationNotFoundError(LookupError):
    pass


def content_text(message: WhatsAppMessageReceived) -> str | None:
    content = message.content
    for attribute in ("body", "text", "title", "caption"):
        value = getattr(content, attribute, None)
        if isinstance(value, str) and value:
            return value
    return None


class Conversations(Application):
    """The event-sourced application holding every Conversation."""

    snapshotting_intervals = {Conversation: 100}

    def __init__(self, env: dict[str, str] | None = None):
        super().__init__(env)
        self.on_saved: Callable[[], None] = lambda: None

    def _change(
        self,
        id_: Any,
        decide: Callable[[Conversation], bool],
        create: Callable[[], Conversation] | None = None,
    ) -> bool:
        for attempt in range(RETRIES):
            try:
                conversation: Conversation = self.repository.get(id_)
            except AggregateNotFoundError:
                if create is None:
                    raise ConversationNotFoundError(str(id_)) from None
                conversation = create()
            if not decide(conversation):
                return False
            try:
                self.save(conversation)
            except IntegrityError:
                if attempt == RETRIES - 1:
                    raise
                continue
            self.on_saved()
            return True
        return False

    def receive(self, message: WhatsAppMessageReceived) -> bool:
        return self._change(
            conversation_id(message.tenant_id, message.lead),
            lambda c: c.receive(
                message.wamid,
                message.content.kind,
                content_text(message),
                message.lead_name,
                str(message.event_id),
            ),
            create=lambda: Conversation(message.tenant_id, message.lead, message.phone_number_id),
        )

    def compose(self, reply: ReplyGenerated) -> bool:
        fields = reply.model_dump(
            mode="json",
            include={
                "text",
                "tier",
                "source",
                "intent",
                "model",
                "prompt_tokens",
                "completion_tokens",
                "cost_usd",
                "cache_hit",
                "citations",
                "latency_ms",
                "handoff",
                "handoff_reason",
            },
        )
        return self._change(
            _uuid(reply.conversation_id),
            lambda c: c.compose(reply.turn_id, fields, str(reply.event_id)),
        )

    def sent(self, outcome: WhatsAppMessageSent) -> bool:
        turn_id = outcome.reference or ""
        return self._change(
            _uuid(outcome.conversation_id),
            lambda c: c.sent(turn_id, outcome.wamid, str(outcome.event_id), outcome.correlation_id),
        )

    def failed(self, outcome: WhatsAppSendFailed) -> bool:
        turn_id = outcome.reference or ""
        return self._change(
            _uuid(outcome.conversation_id),
            lambda c: c.failed(
                turn_id, outcome.reason, outcome.code, str(outcome.event_id), outcome.correlation_id
            ),
        )

    def get(self, tenant_id: str, id_: str) -> Conversation:
        try:
            conversation: Conversation = self.repository.get(_uuid(id_))
        except (AggregateNotFoundError, ValueError):
            raise ConversationNotFoundError(id_) from None
        if conversation.tenant_id != tenant_id:
            raise ConversationNotFoundError(id_)
        return conversation


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)
