"""Conversation use cases: load, decide, save. Synchronous (eventsourcing is); the handlers
call them through ``asyncio.to_thread``.

Concurrent writers of one conversation are resolved by optimistic concurrency: the second
save raises ``IntegrityError``; we reload and decide again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from taskpilot.contracts.inference import ReplyGenerated
from taskpilot.contracts.tools import ToolCallCompleted
from taskpilot.contracts.whatsapp import (
    WhatsAppMessageReceived,
    WhatsAppMessageSent,
    WhatsAppSendFailed,
    WhatsAppStatusReceived,
)
from taskpilot.conversation.domain import Conversation, conversation_id

RETRIES = 5
_REPLY_FIELDS = {
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
    "round",
    "tool_calls",
}


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

    def __init__(self, env: dict[str, str] | None = None, burst_window_s: float = 0.0):
        super().__init__(env)
        self.burst_window_s = burst_window_s
        self.on_saved: Callable[[], None] = lambda: None

    def _change(
        self,
        id_: uuid.UUID,
        decide: Callable[[Conversation], Any],
        create: Callable[[], Conversation] | None = None,
    ) -> Any:
        for attempt in range(RETRIES):
            try:
                conversation: Conversation = self.repository.get(id_)
            except AggregateNotFoundError:
                if create is None:
                    raise ConversationNotFoundError(str(id_)) from None
                conversation = create()
            outcome = decide(conversation)
            if not outcome:
                return outcome
            try:
                self.save(conversation)
            except IntegrityError:
                if attempt == RETRIES - 1:
                    raise
                continue
            self.on_saved()
            return outcome
        return False

    # -- from the bus ------------------------------------------------------------------

    def receive(self, message: WhatsAppMessageReceived) -> bool:
        return bool(
            self._change(
                conversation_id(message.tenant_id, message.lead),
                lambda c: c.receive(
                    message.wamid,
                    message.content.kind,
                    content_text(message),
                    message.lead_name,
                    str(message.event_id),
                    at=message.wa_timestamp,
                    debounce=self.burst_window_s > 0,
                ),
                create=lambda: Conversation(
                    message.tenant_id, message.lead, message.phone_number_id
                ),
            )
        )

    def compose(self, reply: ReplyGenerated) -> bool:
        fields = reply.model_dump(mode="json", include=_REPLY_FIELDS)
        return bool(
            self._change(
                _uuid(reply.conversation_id),
                lambda c: c.compose(reply.turn_id, fields, str(reply.event_id)),
            )
        )

    def tool_completed(self, done: ToolCallCompleted) -> bool:
        return bool(
            self._change(
                _uuid(done.conversation_id),
                lambda c: c.tool_completed(
                    done.tool_call_id,
                    done.result,
                    done.error.model_dump() if done.error else None,
                    str(done.event_id),
                ),
            )
        )

    def sent(self, outcome: WhatsAppMessageSent) -> bool:
        return bool(
            self._change(
                _uuid(outcome.conversation_id),
                lambda c: c.sent(
                    outcome.reference or "",
                    outcome.wamid,
                    str(outcome.event_id),
                    outcome.correlation_id,
                ),
            )
        )

    def failed(self, outcome: WhatsAppSendFailed) -> bool:
        return bool(
            self._change(
                _uuid(outcome.conversation_id),
                lambda c: c.failed(
                    outcome.reference or "",
                    outcome.reason,
                    outcome.code,
                    str(outcome.event_id),
                    outcome.correlation_id,
                ),
            )
        )

    def status(self, update: WhatsAppStatusReceived) -> bool:
        try:
            return bool(
                self._change(
                    conversation_id(update.tenant_id, update.lead),
                    lambda c: c.delivery_status(update.wamid, update.status, str(update.event_id)),
                )
            )
        except ConversationNotFoundError:
            return False  # a status for a message we never sent through a conversation

    # -- from timers -------------------------------------------------------------------

    def flush(self, id_: uuid.UUID) -> bool:
        return bool(self._change(id_, lambda c: c.flush(f"burst:{c.version}")))

    def deadline_passed(self, id_: uuid.UUID, turn_id: str, holding_text: str) -> bool:
        return bool(
            self._change(
                id_, lambda c: c.deadline_passed(turn_id, holding_text, f"deadline:{turn_id}")
            )
        )

    # -- from people (the dashboard API) -----------------------------------------------

    def take_over(self, tenant_id: str, id_: str, agent: str) -> bool:
        self.get(tenant_id, id_)
        return bool(self._change(_uuid(id_), lambda c: c.take_over(agent, f"agent:{agent}")))

    def human_reply(self, tenant_id: str, id_: str, agent: str, text: str) -> str:
        self.get(tenant_id, id_)
        now = datetime.now(UTC)
        return str(
            self._change(_uuid(id_), lambda c: c.human_reply(agent, text, now, f"agent:{agent}"))
        )

    def release(self, tenant_id: str, id_: str, agent: str) -> bool:
        self.get(tenant_id, id_)
        return bool(self._change(_uuid(id_), lambda c: c.release(agent, f"agent:{agent}")))

    def get(self, tenant_id: str, id_: str | uuid.UUID) -> Conversation:
        try:
            conversation: Conversation = self.repository.get(
                id_ if isinstance(id_, uuid.UUID) else _uuid(id_)
            )
        except (AggregateNotFoundError, ValueError):
            raise ConversationNotFoundError(str(id_)) from None
        if conversation.tenant_id != tenant_id:
            raise ConversationNotFoundError(str(id_))
        return conversation

    def history_of(self, tenant_id: str, id_: str | uuid.UUID) -> list[dict[str, Any]]:
        """Every stored event of the conversation, in order, as plain data."""
        conversation = self.get(tenant_id, id_)
        events: list[Any] = list(self.events.get(conversation.id))
        return [
            {
                "version": e.originator_version,
                "type": type(e).__name__,
                "at": e.timestamp.isoformat(),
                "data": {
                    k: v
                    for k, v in e.__dict__.items()
                    if k not in ("originator_id", "originator_version", "timestamp", "env")
                },
            }
            for e in events
        ]


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)
