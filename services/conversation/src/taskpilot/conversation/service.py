"""Conversation use cases: load, decide, save. Synchronous (eventsourcing is); the handlers
call them through ``asyncio.to_thread``.

Concurrent writers of one conversation are resolved by optimistic concurrency: the second
save raises ``IntegrityError``; we reload and decide again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from taskpilot.contracts.inference import ReplyGenerated
from taskpilot.contracts.tools import PaymentReceived, ToolCallCompleted
from taskpilot.contracts.whatsapp import (
    WhatsAppMessageReceived,
    WhatsAppMessageSent,
    WhatsAppSendFailed,
    WhatsAppStatusReceived,
)
from taskpilot.conversation.domain import Conversation, conversation_id
from taskpilot.tenancy import BusinessProfile

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


@dataclass(frozen=True)
class Change:
    """One use case as data: which conversation, what to decide, how to start it if new.

    The synchronous ``_run`` (tests, the HTTP API) and the group committer (the bus
    handlers) execute the same Change.
    """

    id: uuid.UUID
    decide: Callable[[Conversation], Any]
    create: Callable[[], Conversation] | None = None


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

    def load(self, change: Change) -> Conversation:
        try:
            conversation: Conversation = self.repository.get(change.id)
        except AggregateNotFoundError:
            if change.create is None:
                raise ConversationNotFoundError(str(change.id)) from None
            conversation = change.create()
        return conversation

    def _change(
        self,
        id_: uuid.UUID,
        decide: Callable[[Conversation], Any],
        create: Callable[[], Conversation] | None = None,
    ) -> Any:
        return self.run(Change(id_, decide, create))

    def run(self, change: Change) -> Any:
        """Load, decide, save; on a concurrent writer's conflict, reload and decide again."""
        for attempt in range(RETRIES):
            conversation = self.load(change)
            outcome = change.decide(conversation)
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
        return bool(self.run(self.receive_change(message)))

    def compose(self, reply: ReplyGenerated) -> bool:
        return bool(self.run(self.compose_change(reply)))

    def tool_completed(self, done: ToolCallCompleted) -> bool:
        return bool(self.run(self.tool_completed_change(done)))

    def sent(self, outcome: WhatsAppMessageSent) -> bool:
        return bool(self.run(self.sent_change(outcome)))

    def failed(self, outcome: WhatsAppSendFailed) -> bool:
        return bool(self.run(self.failed_change(outcome)))

    def status(self, update: WhatsAppStatusReceived) -> bool:
        try:
            return bool(self.run(self.status_change(update)))
        except ConversationNotFoundError:
            return False  # a status for a message we never sent through a conversation

    def receive_change(self, m: WhatsAppMessageReceived) -> Change:
        debounce = self.burst_window_s > 0
        return Change(
            conversation_id(m.tenant_id, m.lead),
            lambda c: c.receive(
                m.wamid,
                m.content.kind,
                content_text(m),
                m.lead_name,
                str(m.event_id),
                at=m.wa_timestamp,
                debounce=debounce,
            ),
            create=lambda: Conversation(m.tenant_id, m.lead, m.phone_number_id),
        )

    def compose_change(
        self,
        reply: ReplyGenerated,
        holding_text: str = "",
        template: dict[str, Any] | None = None,
    ) -> Change:
        """``template``: the tenant's approved template, sent instead of a reply that comes
        after the lead's 24-hour window (None: a person takes over then)."""
        fields = reply.model_dump(mode="json", include=_REPLY_FIELDS)
        now = datetime.now(UTC)
        return Change(
            _uuid(reply.conversation_id),
            lambda c: c.compose(
                reply.turn_id,
                fields,
                str(reply.event_id),
                holding_text,
                now=now,
                template=template,
            ),
        )

    def tool_completed_change(self, done: ToolCallCompleted) -> Change:
        error = done.error.model_dump() if done.error else None
        return Change(
            _uuid(done.conversation_id),
            lambda c: c.tool_completed(done.tool_call_id, done.result, error, str(done.event_id)),
        )

    def sent_change(self, o: WhatsAppMessageSent) -> Change:
        return Change(
            _uuid(o.conversation_id),
            lambda c: c.sent(o.reference or "", o.wamid, str(o.event_id), o.correlation_id),
        )

    def failed_change(self, o: WhatsAppSendFailed) -> Change:
        return Change(
            _uuid(o.conversation_id),
            lambda c: c.failed(
                o.reference or "", o.reason, o.code, str(o.event_id), o.correlation_id
            ),
        )

    def payment_change(
        self, p: PaymentReceived, text: str, template: dict[str, Any] | None = None
    ) -> Change:
        now = datetime.now(UTC)
        return Change(
            _uuid(p.conversation_id or ""),
            lambda c: c.payment_received(
                p.checkout_session_id,
                p.amount_minor,
                p.currency,
                text,
                now,
                str(p.event_id),
                template,
            ),
        )

    def status_change(self, u: WhatsAppStatusReceived) -> Change:
        error = u.errors[0] if u.errors else {}
        code = error.get("code") if isinstance(error.get("code"), int) else None
        title = str(error.get("title") or error.get("message") or "")
        return Change(
            conversation_id(u.tenant_id, u.lead),
            lambda c: c.delivery_status(u.wamid, u.status, str(u.event_id), code, title),
        )

    # -- from timers -------------------------------------------------------------------

    def flush(self, id_: uuid.UUID) -> bool:
        return bool(self._change(id_, lambda c: c.flush(f"burst:{c.version}")))

    def deadline_passed(
        self,
        id_: uuid.UUID,
        turn_id: str,
        holding_text: str,
        template: dict[str, Any] | None = None,
    ) -> bool:
        now = datetime.now(UTC)
        return bool(
            self._change(
                id_,
                lambda c: c.deadline_passed(
                    turn_id, holding_text, f"deadline:{turn_id}", now=now, template=template
                ),
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


def window_template(profile: BusinessProfile) -> dict[str, Any] | None:
    """The tenant's template for replies after the 24-hour window, as the aggregate takes it."""
    template = profile.window_template
    return template.model_dump(mode="json") if template is not None else None


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)
