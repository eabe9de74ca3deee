"""A hand-written fake of the LLM provider port, for tests and offline benches.

It obeys the same contract as the LiteLLM adapter (the contract test runs against both):
answers are queued per tier; a tier with nothing queued is unavailable; premium fallbacks are
skipped when the request does not allow premium.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field

from taskpilot.inference.adapters.llm import (
    ChatRequest,
    ChatResult,
    ChatToolCall,
    ContextTooLongError,
    ModelError,
    ModelUnavailableError,
)


@dataclass
class ScriptedChatModel:
    prices: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"L2": (1e-7, 4e-7), "L3": (3e-6, 1.5e-5)}
    )
    fallbacks: dict[str, list[str]] = field(default_factory=lambda: {"L3": ["L2"]})
    script: dict[str, deque[ChatResult | ModelError]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    requests: list[ChatRequest] = field(default_factory=list)

    @property
    def tiers(self) -> frozenset[str]:
        return frozenset(self.prices)

    def queue(self, tier: str, *outcomes: ChatResult | ModelError) -> None:
        self.script[tier].extend(outcomes)

    def text(self, tier: str, content: str, prompt: int = 200, completion: int = 40) -> ChatResult:
        return self._result(tier, content, (), prompt, completion)

    def calls(self, tier: str, *calls: tuple[str, str]) -> ChatResult:
        tool_calls = tuple(ChatToolCall(f"call_{i}", n, a) for i, (n, a) in enumerate(calls))
        return self._result(tier, None, tool_calls, 200, 20)

    def _result(
        self,
        tier: str,
        content: str | None,
        calls: tuple[ChatToolCall, ...],
        prompt: int,
        completion: int,
    ) -> ChatResult:
        cost_in, cost_out = self.prices[tier]
        return ChatResult(
            content,
            calls,
            f"scripted-{tier.lower()}",
            tier,
            prompt,
            completion,
            prompt * cost_in + completion * cost_out,
        )

    async def complete(self, request: ChatRequest) -> ChatResult:
        self.requests.append(request)
        chain = [request.tier, *self.fallbacks.get(request.tier, [])]
        if not request.allow_premium:
            chain = [t for t in chain if t != "L3"]
        error: ModelError = ModelUnavailableError(f"{request.tier}: nothing scripted")
        for tier in chain:
            if not self.script[tier]:
                continue
            outcome = self.script[tier].popleft()
            if isinstance(outcome, ContextTooLongError):
                raise outcome
            if isinstance(outcome, ModelError):
                error = outcome
                continue
            return outcome
        raise error

    async def close(self) -> None:
        return None
