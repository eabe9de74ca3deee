"""Reply generation (owner: inference)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskpilot.contracts import subjects
from taskpilot.contracts.envelope import LeadId, Message
from taskpilot.contracts.subjects import Channel

# Budget events of inference. They belong next to GENERATE_REPLY in `subjects`; declared here
# (once) until that module takes them over. Both land in the INFERENCE stream (inference.>).
BUDGET_NEAR_CAP = Channel("inference.{tenant}.budget_near_cap", subjects.INFERENCE)
BUDGET_EXCEEDED = Channel("inference.{tenant}.budget_exceeded", subjects.INFERENCE)
# Request-reply, never stored: what inference would answer a past turn today.
INFERENCE_WHAT_IF = Channel("rpc.inference.{tenant}.what_if", None, "request-reply")
# Request-reply, never stored: the weekly marketing plan written by a model (asked by tools).
INFERENCE_WRITE_PLAN = Channel("rpc.inference.{tenant}.write_plan", None, "request-reply")

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
    tool: str | None = Field(
        default=None, description="The tool that ran (lets inference replay the call natively)"
    )
    arguments: dict[str, Any] | None = Field(default=None, description="The arguments it ran with")


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


class ReplyWhatIf(GenerateReply):
    """Request-reply: how inference would answer this turn today, with today's settings,
    prompts, models and knowledge. A dry run: nothing is published, no tool runs and the
    semantic cache is not written (a model's cost is still counted: it was spent)."""

    CHANNEL: ClassVar = INFERENCE_WHAT_IF


class WhatIfAnswer(BaseModel):
    """The answer to :class:`ReplyWhatIf`: a reply as inference would generate it now."""

    model_config = ConfigDict(frozen=True)

    text: str | None = None
    tier: Tier = "fallback"
    source: ReplySource = "handoff"
    intent: str | None = None
    model: str = "local"
    cost_usd: float = 0.0
    cache_hit: bool = False
    handoff: bool = False
    tool_calls: list[ToolCall] = Field(
        default=[], description="Tools it would call first (not run in a dry run)"
    )
    error: str | None = None


class WriteMarketingPlan(Message):
    """Request-reply (tools asks inference): write the tenant's marketing plan for the coming
    week from the last week's recorded facts. The facts travel as data: inference puts them in
    a delimited data block of the prompt, never among its instructions."""

    CHANNEL: ClassVar = INFERENCE_WRITE_PLAN

    job_id: str
    week_start: str = Field(description="YYYY-MM-DD, the Monday of the week the facts cover")
    week_end: str = Field(description="YYYY-MM-DD, the Monday after it (exclusive)")
    facts: dict[str, Any] = Field(description="Counts of the week: messages, leads, bookings...")
    summary: list[str] = Field(default=[], description="The facts in sentences (deterministic)")
    suggestions: list[dict[str, str]] = Field(
        default=[], description="Rule-based suggestions, each with its fact and rule"
    )


class MarketingPlanAnswer(BaseModel):
    """The answer to :class:`WriteMarketingPlan`: the model's text, or why there is none
    (``refused``: no model configured, budget used up, rate limit, every model failed)."""

    model_config = ConfigDict(frozen=True)

    text: str | None = None
    model: str | None = Field(default=None, description="The model that wrote it")
    tier: Literal["L2", "L3"] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    refused: str | None = None


class TenantBudgetNearCap(Message):
    """A tenant's model spend this month crossed the warning share of its budget: premium
    models (level 3) are off for it until the month ends or the budget is raised."""

    CHANNEL: ClassVar = BUDGET_NEAR_CAP

    month: str = Field(description="YYYY-MM (UTC)")
    spent_usd: float
    budget_usd: float
    share: float = Field(description="spent / budget when the event was raised")


class TenantBudgetExceeded(Message):
    """A tenant's model spend this month reached its budget: level 1 and handoff only."""

    CHANNEL: ClassVar = BUDGET_EXCEEDED

    month: str = Field(description="YYYY-MM (UTC)")
    spent_usd: float
    budget_usd: float


INFERENCE_EVENTS: tuple[type[Message], ...] = (
    GenerateReply,
    ReplyGenerated,
    TenantBudgetNearCap,
    TenantBudgetExceeded,
)
