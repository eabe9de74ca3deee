"""Cost control of one tenant's model use: token buckets (requests and tokens per second) and
the monthly budget, with events when it is nearly and fully used. Use-case helper of the
service; the totals live in the spend ledger shared by every replica."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import Counter

from taskpilot.contracts import Message
from taskpilot.contracts.inference import (
    GenerateReply,
    TenantBudgetExceeded,
    TenantBudgetNearCap,
)
from taskpilot.inference.adapters.spend import SpendLedger
from taskpilot.inference.cascade import Outcome
from taskpilot.inference.domain import budget as budgets
from taskpilot.inference.domain.decisions import Allowance
from taskpilot.tenancy.buckets import Buckets

log = logging.getLogger(__name__)

SPEND = Counter("taskpilot_inference_cost_usd_total", "Model spend in USD", ["tier"])
TOKENS = Counter(
    "taskpilot_inference_tokens_total",
    "Model tokens by tier, model (the configured tiers' models and fallbacks: a bounded set) "
    "and kind (prompt, completion)",
    ["tier", "model", "kind"],
)
Publish = Callable[..., Awaitable[bool]]


@dataclass(frozen=True)
class Usage:
    """What one model call used (tier L2 or L3, the model that answered)."""

    tier: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


async def _no_budget() -> budgets.Budget | None:
    return None


@dataclass
class Spending:
    ledger: SpendLedger
    budget_of: Callable[[str], Awaitable[budgets.Budget | None]] = lambda _tenant: _no_budget()
    """The tenant's monthly budget (the composition root reads it from the tenant directory)."""
    requests: Buckets = field(default_factory=lambda: Buckets(5.0, 20.0))
    tokens: Buckets = field(default_factory=lambda: Buckets(2000.0, 40000.0))
    max_wait_s: float = 2.0
    clock: Callable[[], float] = time.time

    def month(self) -> str:
        return budgets.month_of(datetime.fromtimestamp(self.clock(), UTC))

    async def allowance(self, tenant_id: str) -> Allowance:
        budget = await self.budget_of(tenant_id)
        if budget is None:
            return Allowance()
        spent = await self.ledger.spent(tenant_id, self.month())
        return budgets.allowance(spent.usd, budget)

    async def admit(self, tenant_id: str, messages: list[dict[str, object]]) -> bool:
        """Take a request and the prompt's estimated tokens from the tenant's buckets, waiting
        up to ``max_wait_s``; False when the tenant is over its rate for longer than that."""
        estimate = min(
            sum(len(str(m.get("content") or "")) for m in messages) / 4 + 400, self.tokens.burst
        )
        for bucket, amount in (
            (self.requests[tenant_id], 1.0),
            (self.tokens[tenant_id], estimate),
        ):
            if bucket.try_take(amount):
                continue
            if bucket.wait_time(amount) > self.max_wait_s:
                log.warning("tenant %s over its model rate limit", tenant_id)
                return False
            await bucket.take(amount)
        return True

    async def record(self, command: GenerateReply, outcome: Outcome, publish: Publish) -> None:
        """Add the turn's cost to the month; publish the budget events it crossed."""
        usage = Usage(
            outcome.decision.tier,
            outcome.model,
            outcome.prompt_tokens,
            outcome.completion_tokens,
            outcome.cost_usd,
        )
        await self.charge(command, usage, publish)

    async def charge(self, command: Message, usage: Usage, publish: Publish) -> None:
        """Add one model call's cost (of a turn, a plan...) to the tenant's month; publish the
        budget events it crossed, caused by ``command``."""
        if not usage.cost_usd and not usage.prompt_tokens:
            return
        tier, model = usage.tier, usage.model
        SPEND.labels(tier=tier).inc(usage.cost_usd)
        TOKENS.labels(tier=tier, model=model, kind="prompt").inc(usage.prompt_tokens)
        TOKENS.labels(tier=tier, model=model, kind="completion").inc(usage.completion_tokens)
        month = self.month()
        tokens = usage.prompt_tokens + usage.completion_tokens
        before, after = await self.ledger.add(command.tenant_id, month, usage.cost_usd, tokens)
        budget = await self.budget_of(command.tenant_id)
        if budget is None:
            return
        crossing = budgets.crossed(before.usd, after.usd, budget)
        events: list[tuple[Message, str]] = []
        if crossing.near:
            events.append(
                (
                    command.caused(
                        TenantBudgetNearCap,
                        month=month,
                        spent_usd=after.usd,
                        budget_usd=budget.monthly_usd,
                        share=after.usd / budget.monthly_usd,
                    ),
                    "near",
                )
            )
        if crossing.exceeded:
            events.append(
                (
                    command.caused(
                        TenantBudgetExceeded,
                        month=month,
                        spent_usd=after.usd,
                        budget_usd=budget.monthly_usd,
                    ),
                    "exceeded",
                )
            )
        for event, kind in events:
            log.warning(
                "tenant %s budget %s: %.4f of %.2f USD",
                command.tenant_id,
                kind,
                after.usd,
                budget.monthly_usd,
            )
            await publish(event, msg_id=f"budget:{command.tenant_id}:{month}:{kind}")
