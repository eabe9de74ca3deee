"""Reply generation (owner: inference)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

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


class ToolCall(BaseModel):
    """A tool the model wants run, in the provider-neutral (OpenAI) shape."""

    model_config = ConfigDict(frozen=True)

    id: str
    tool: str
    arguments: dict[str, Any] = {}


class ToolResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    call_id: str
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class GenerateReply(Message):
    """Command: answer the lead's latest message(s) in this conversation."""

    CHANNEL: ClassVar = subjects.GENERATE_REPLY

    conversation_id: str
    turn_id: str
    lead: LeadId
    text: str = Field(description="The lead's message(s) to answer, bursts joined by newlines")
    history: list[Turn] = []
    round: int = Field(default=0, description="0, then 1.. after each round of tool calls")
    tool_results: list[ToolResult] = []


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
    round: int = 0
    tool_calls: list[ToolCall] = Field(
        default=[], description="Tools to run before answering; the reply text is then unused"
    )
