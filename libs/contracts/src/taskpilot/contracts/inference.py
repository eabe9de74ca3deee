"""Reply generation (owner: inference)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskpilot.contracts import subjects
from taskpilot.contracts.envelope import LeadId, Message

Tier = Literal["L0", "L1", "L2", "L3", "fallback"]
ReplySource = Literal["template", "faq", "knowledge", "model", "handoff", "silence"]


class Turn(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Literal["lead", "assistant", "human"]
    text: str


class Citation(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    kind: Literal["faq", "chunk", "memory"]
    title: str
    score: float


class GenerateReply(Message):
    """Command: answer the lead's latest message(s) in this conversation."""

    CHANNEL: ClassVar = subjects.GENERATE_REPLY

    conversation_id: str
    turn_id: str
    lead: LeadId
    text: str = Field(description="The lead's message(s) to answer, bursts joined by newlines")
    history: list[Turn] = []


class ReplyGenerated(Message):
    """How inference answered a turn, with what it cost and why."""

    CHANNEL: ClassVar = subjects.REPLY_GENERATED

    conversation_id: str
    turn_id: str
    text: str | None = Field(description="None when the right answer is silence (spam)")
    tier: Tier
    source: ReplySource
    intent: str | None = None
    confidence: float | None = None
    model: str = "local"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cache_hit: bool = False
    citations: list[Citation] = []
    latency_ms: float = 0.0
    handoff: bool = False
    handoff_reason: str | None = None
