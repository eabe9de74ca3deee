"""Public domain events of conversations (owner: conversation), relayed after commit.

They are the conversation service's own facts, so read models can be rebuilt from this
stream alone. Each carries ``conversation_id`` and the ``lead``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from taskpilot.contracts import subjects
from taskpilot.contracts.envelope import LeadId, Message
from taskpilot.contracts.inference import Citation, ReplySource, Tier, ToolCall, ToolResult


class ConversationEvent(Message):
    CHANNEL: ClassVar = subjects.CONVERSATION_EVENT
    EVENT: ClassVar[str] = ""

    conversation_id: str
    lead: LeadId
    sequence: int = Field(description="Position in the conversation's own history (1-based)")

    def subject_parts(self) -> dict[str, str]:
        # The lead is in the subject so erasure can purge one lead's messages from the stream.
        return {"lead": self.lead, "event": self.EVENT}


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
    round: int = 0


class TurnSuperseded(ConversationEvent):
    """The lead wrote again before the turn was answered; the next turn answers both."""

    EVENT: ClassVar[str] = "turn_superseded"

    turn_id: str


class ToolCallsRequested(ConversationEvent):
    EVENT: ClassVar[str] = "tool_calls_requested"

    turn_id: str
    round: int
    calls: list[ToolCall]


class ToolResultRecorded(ConversationEvent):
    EVENT: ClassVar[str] = "tool_result_recorded"

    turn_id: str
    result: ToolResult


class TurnTimedOut(ConversationEvent):
    """Inference or a tool did not answer within the deadline."""

    EVENT: ClassVar[str] = "turn_timed_out"

    turn_id: str
    round: int


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
    withheld: str | None = Field(
        default=None,
        description=(
            "Why the text was not sent to the lead: 'window_closed' (composed after WhatsApp's "
            "24-hour window; a TemplateSent or a hand-off follows)"
        ),
    )


class ReplySent(ConversationEvent):
    EVENT: ClassVar[str] = "reply_sent"

    turn_id: str
    wamid: str


class ReplyStatusChanged(ConversationEvent):
    EVENT: ClassVar[str] = "reply_status_changed"

    turn_id: str
    wamid: str
    status: Literal["delivered", "read", "played"]


class ReplyFailed(ConversationEvent):
    EVENT: ClassVar[str] = "reply_failed"

    turn_id: str
    reason: str
    code: int | None = None


class WindowClosed(ConversationEvent):
    """The 24-hour window had closed: Meta refused a free-form message, or the reply was
    composed after the window closed (and withheld)."""

    EVENT: ClassVar[str] = "window_closed"

    turn_id: str


class TemplateSent(ConversationEvent):
    """The tenant's approved template went to the lead instead of a free-form reply (after the
    24-hour window only a template may reach them)."""

    EVENT: ClassVar[str] = "template_sent"

    turn_id: str
    template: str = Field(description="The template's name")
    language: str


class TurnFinished(ConversationEvent):
    """A turn reached the lead: what they wrote and the answer they got (by the assistant or a
    person; empty after a template). The lead's long-term memory keeps it."""

    EVENT: ClassVar[str] = "turn_finished"

    turn_id: str
    lead_text: str
    reply_text: str
    by: str = Field(default="assistant", description="assistant, or the agent's id")


class ConversationHandedOff(ConversationEvent):
    EVENT: ClassVar[str] = "handed_off"

    reason: str
    by: str = Field(default="assistant", description="assistant, system, or the agent's id")


class PaymentConfirmed(ConversationEvent):
    """A payment for this conversation's link was confirmed by the provider."""

    EVENT: ClassVar[str] = "payment_confirmed"

    payment_id: str
    amount_minor: int | None = None
    currency: str | None = None


class HumanReplied(ConversationEvent):
    EVENT: ClassVar[str] = "human_replied"

    turn_id: str
    text: str
    agent: str


class BotResumed(ConversationEvent):
    EVENT: ClassVar[str] = "bot_resumed"

    agent: str


class LeadErased(ConversationEvent):
    """Everything held about the lead was deleted (GDPR). Carries no personal data but ids."""

    EVENT: ClassVar[str] = "lead_erased"

    requested_by: str
    details: dict[str, Any] = {}


class ConversationArchived(ConversationEvent):
    """The conversation's events moved to cold storage (hot store and detail rows may go).

    ``counts`` are its stored events by type at archive time: read models keep their totals
    (archiving changes no number) and may drop per-message rows. ``sequence`` is the last
    archived version; a restore brings exactly these events back, without republishing them.
    """

    EVENT: ClassVar[str] = "archived"

    archive_key: str
    sha256: str
    events: int
    counts: dict[str, int] = {}


class ConversationRestored(ConversationEvent):
    """An archived conversation is back in the hot store (a new message or an operator).

    Its events are not relayed again: read models must not count anything for it.
    """

    EVENT: ClassVar[str] = "restored"

    reason: str
    events: int


class ConversationContentRedacted(ConversationEvent):
    """Retention removed message content older than ``before`` (hot store and archive).

    Read models drop text they hold for this conversation up to ``before``; metrics stay.
    """

    EVENT: ClassVar[str] = "content_redacted"

    before: datetime
    events_redacted: int
    archived: bool = False


TENANT_LEAD = "_tenant"
"""The ``lead`` of tenant-wide lifecycle events (no lead is involved)."""


class RetentionApplied(ConversationEvent):
    """One run of a tenant's retention rules. ``lead`` is :data:`TENANT_LEAD` and
    ``conversation_id`` the run's id: it concerns the tenant, not a conversation."""

    EVENT: ClassVar[str] = "retention_applied"

    rules: dict[str, Any]
    conversations_redacted: int
    events_redacted: int
    archives_rewritten: int
    memories_forgotten: int = Field(
        default=0, description="Turns the leads' long-term memory (knowledge) forgot"
    )


class LifecycleRunFinished(ConversationEvent):
    """A scheduled run of the lifecycle jobs finished for a tenant: what the archive job
    moved (``resumed`` when it went on with a job an earlier run left unfinished) and what
    retention redacted. ``lead`` is :data:`TENANT_LEAD`, ``conversation_id`` the run's id."""

    EVENT: ClassVar[str] = "lifecycle_run_finished"

    archived: int
    skipped: int
    resumed: bool = False
    events_redacted: int = 0
    trigger: str = Field(default="schedule", description="schedule or operator")


CONVERSATION_EVENTS: tuple[type[ConversationEvent], ...] = (
    LeadMessageReceived,
    ReplyRequested,
    TurnSuperseded,
    ToolCallsRequested,
    ToolResultRecorded,
    TurnTimedOut,
    ReplyComposed,
    ReplySent,
    ReplyStatusChanged,
    ReplyFailed,
    WindowClosed,
    TemplateSent,
    TurnFinished,
    ConversationHandedOff,
    HumanReplied,
    BotResumed,
    PaymentConfirmed,
    LeadErased,
    ConversationArchived,
    ConversationRestored,
    ConversationContentRedacted,
    RetentionApplied,
    LifecycleRunFinished,
)
