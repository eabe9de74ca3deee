"""Levels 2 and 3: ask a model, check its answer, escalate or hand off. Use-case helper of
:mod:`taskpilot.inference.service`; the provider sits behind the ChatModel port.

Never silence: an outage of the whole chain, a prompt too long for every model, or an answer
that fails its checks at the last allowed tier ends in the tenant's holding reply and a handoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter

from taskpilot.contracts.inference import Citation, ToolCall, ToolResult
from taskpilot.inference.adapters.llm import (
    ChatModel,
    ChatRequest,
    ChatResult,
    ContextTooLongError,
    ModelRequestError,
    ModelUnavailableError,
)
from taskpilot.inference.domain import guard, toolspec
from taskpilot.inference.domain.answers import InvalidAnswerError, numbers, parse_answer, problem
from taskpilot.inference.domain.decisions import Allowance, Decision, ModelTier, hand_off
from taskpilot.inference.domain.intents import IntentGuess
from taskpilot.inference.domain.prompts import DataBlock
from taskpilot.tenancy import BusinessProfile

log = logging.getLogger(__name__)

ESCALATIONS = Counter(
    "taskpilot_inference_escalations_total", "Level-2 answers sent to level 3, by cause", ["cause"]
)
MODEL_FAILURES = Counter(
    "taskpilot_inference_model_failures_total", "Model calls that failed, by error", ["error"]
)
PROMPT_LEAKS = Counter(
    "taskpilot_inference_prompt_leaks_total",
    "Replies withheld because they repeated the assistant's instructions",
)
LEAK_REASON = "the reply repeated the assistant's instructions"


@dataclass
class Outcome:
    decision: Decision
    model: str = "local"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    tool_calls: list[ToolCall] = field(default_factory=list)
    personal: bool = False
    escalations: list[str] = field(default_factory=list)

    def account(self, result: ChatResult) -> None:
        self.model = result.model
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        self.cost_usd += result.cost_usd


@dataclass(frozen=True)
class Turn:
    """Everything the cascade needs about one turn."""

    tenant_id: str
    profile: BusinessProfile
    guess: IntentGuess | None
    messages: list[dict[str, object]]
    offered_tools: list[str]
    blocks: Sequence[DataBlock]
    lead_text: str
    tool_results: Sequence[ToolResult] = ()


@dataclass(frozen=True)
class _Escalate:
    reason: str


class Cascade:
    def __init__(self, model: ChatModel, max_tokens: int = 400, deadline_s: float = 20.0):
        self._model = model
        self._max_tokens = max_tokens
        self._deadline_s = deadline_s
        """Inside the conversation's turn deadline (30 s), so the lead hears from us first."""

    async def answer(self, turn: Turn, first: ModelTier, allowance: Allowance) -> Outcome:
        outcome = Outcome(hand_off(turn.profile, turn.guess, "no model answered"))
        try:
            async with asyncio.timeout(self._deadline_s):
                return await self._climb(turn, first, allowance, outcome)
        except TimeoutError:
            MODEL_FAILURES.labels(error="deadline").inc()
            log.warning("models too slow for %s: holding reply", turn.tenant_id)
            outcome.decision = hand_off(turn.profile, turn.guess, "the models were too slow")
            return outcome

    async def _climb(
        self, turn: Turn, first: ModelTier, allowance: Allowance, outcome: Outcome
    ) -> Outcome:
        tier: ModelTier | None = first
        tried: set[str] = set()
        schemas = toolspec.schemas(turn.offered_tools)
        while tier is not None:
            tried.add(tier)
            request = ChatRequest(
                tier, turn.messages, schemas, self._max_tokens, allowance.premium, turn.tenant_id
            )
            try:
                result = await self._model.complete(request)
            except ModelUnavailableError as exc:
                MODEL_FAILURES.labels(error="unavailable").inc()
                log.warning("%s unavailable for %s: %s", tier, turn.tenant_id, exc)
                tier = self._next(tier, allowance, tried)
                if tier is not None:
                    outcome.escalations.append("provider outage")
                    continue
                outcome.decision = hand_off(turn.profile, turn.guess, "every model is unavailable")
                return outcome
            except (ContextTooLongError, ModelRequestError) as exc:
                MODEL_FAILURES.labels(error=type(exc).__name__).inc()
                log.warning("%s refused the request for %s: %s", tier, turn.tenant_id, exc)
                outcome.decision = hand_off(turn.profile, turn.guess, f"model refused: {exc}"[:200])
                return outcome
            outcome.account(result)
            verdict = self._judge(result, turn, outcome)
            if not isinstance(verdict, _Escalate):
                return outcome
            ESCALATIONS.labels(cause=verdict.reason.split(":")[0][:40]).inc()
            outcome.escalations.append(verdict.reason)
            tier = self._next(result.tier, allowance, tried)
            if tier is None:
                outcome.decision = hand_off(
                    turn.profile, turn.guess, f"no answer passed the checks: {verdict.reason}"
                )
        return outcome

    @staticmethod
    def _next(tier: str, allowance: Allowance, tried: set[str]) -> ModelTier | None:
        if tier == "L2" and allowance.premium and "L3" not in tried:
            return "L3"
        return None

    def _judge(self, result: ChatResult, turn: Turn, outcome: Outcome) -> _Escalate | None:
        tier: ModelTier = "L3" if result.tier == "L3" else "L2"
        if result.tool_calls:
            return self._tool_calls(result, turn, outcome, tier)
        try:
            answer = parse_answer(result.content)
        except InvalidAnswerError as exc:
            return _Escalate(f"invalid answer: {exc}")
        if guard.quotes_instructions(answer.reply, str(turn.messages[0]["content"])):
            # A model talked into reciting its rules is not asked again: a person takes over.
            PROMPT_LEAKS.inc()
            log.warning("%s reply for %s repeated the instructions: withheld", tier, turn.tenant_id)
            outcome.decision = hand_off(turn.profile, turn.guess, LEAK_REASON, tier)
            return None
        tool_text = json.dumps([r.model_dump() for r in turn.tool_results], default=str)
        business = " ".join([*(b.text for b in turn.blocks), tool_text])
        odd = guard.unsupported(answer.reply, business)
        if answer.status == "handoff":
            text = answer.reply if not numbers(answer.reply) and odd is None else None
            decision = hand_off(turn.profile, turn.guess, "the model would have to guess", tier)
            outcome.decision = decision if text is None else _with_text(decision, text)
            return None
        issue = problem(answer, turn.blocks, turn.lead_text, tool_text if turn.tool_results else "")
        issue = issue or odd
        if issue is not None:
            return _Escalate(issue)
        cited = [b for b in turn.blocks if b.number in answer.sources]
        outcome.decision = Decision(
            answer.reply,
            tier,
            "knowledge" if cited else "model",
            turn.guess.intent if turn.guess else None,
            turn.guess.confidence if turn.guess else None,
            tuple(
                Citation(
                    id=b.id,
                    kind="faq" if b.kind == "faq" else "chunk",
                    title=b.title,
                    score=b.score,
                )
                for b in cited
            ),
        )
        outcome.personal = answer.personal
        return None

    def _tool_calls(
        self, result: ChatResult, turn: Turn, outcome: Outcome, tier: ModelTier
    ) -> _Escalate | None:
        try:
            calls = [
                toolspec.check_call(c.id, c.name, c.arguments, turn.offered_tools)
                for c in result.tool_calls
            ]
        except toolspec.InvalidToolCallError as exc:
            return _Escalate(f"invalid tool call: {exc}")
        handoff = next((c for c in calls if c.tool == toolspec.HAND_OFF), None)
        if handoff is not None:
            reason = str(handoff.arguments.get("reason", "the model asked for a person"))
            outcome.decision = hand_off(turn.profile, turn.guess, reason[:200], tier)
            return None
        outcome.tool_calls = [ToolCall(id=c.id, tool=c.tool, arguments=c.arguments) for c in calls]
        outcome.decision = Decision(
            None,
            tier,
            "model",
            turn.guess.intent if turn.guess else None,
            turn.guess.confidence if turn.guess else None,
        )
        return None


def _with_text(decision: Decision, text: str) -> Decision:
    return Decision(
        text,
        decision.tier,
        decision.source,
        decision.intent,
        decision.confidence,
        decision.citations,
        decision.handoff,
        decision.handoff_reason,
    )
