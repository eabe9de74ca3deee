"""Public domain events of conversations (owner: conversation), relayed after commit.

They are the conversation service's own facts, so read models can be rebuilt from this
stream alone. Each carries ``conversation_id`` and the ``lead``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from taskpilot.contracts import subjects
from taskpilot.contracts.envelope import LeadId, Message
from taskpilot.contracts.inference import Citation, ReplySource, Tier


class ConversationEvent(Message):
    CHANNEL: ClassVar = subjects.CONVERSATION_EVENT
    EVENT: ClassVar[str] = ""

    conversation_id: str
    lead: LeadId
    sequence: int = Field(description="Position in the conversation's own history (1-based)")

    def subject_parts(self) -> dict[str, str]:
        return {"event": self.EVENT}


class LeadMessageReceived(ConversationEvent):
    EVENT: ClassVar[str] = "lead_message_received"

    wamid: str
    kind: str
    text: str | None = None
    lead_name: str | None = None


class ReplyRequested(ConversationEvent):
    EVENT: ClassVar[str] = "reply_requested"

    turn_id: str
    text: str


class ReplyComposed(ConversationEvent):
    """The answer chosen for a turn, with its tier, cost and sources."""

    EVENT: ClassVar[str] = "reply_composed"

    turn_id: str
    text: str | None
    tier: Tier
    source: ReplySource
    intent: str | None = None
    model: str = "local"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cache_hit: bool = False
    citations: list[Citation] = []
    latency_ms: float = 0.0


class ReplySent(ConversationEvent):
    EVENT: ClassVar[str] = "reply_sent"

    turn_id: str
    wamid: str


class ReplyFailed(ConversationEvent):
    EVENT: ClassVar[str] = "reply_failed"

    turn_id: str
    reason: str
    code: int | None = None


class ConversationHandedOff(ConversationEvent):
    EVENT: ClassVar[str] = "handed_off"

    reason: str


CONVERSATION_EVENTS: tuple[type[ConversationEvent], ...] = (
    LeadMessageReceived,
    ReplyRequested,
    ReplyComposed,
    ReplySent,
    ReplyFailed,
    ConversationHandedOff,
)
