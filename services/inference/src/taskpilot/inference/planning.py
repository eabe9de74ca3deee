"""The weekly marketing plan, written by the tenant's premium model (standard when premium is
not configured or the budget is nearly used up). Use-case helper of inference, answered over
request-reply to the tools service's job.

It never pretends: without a model, over the budget or the rate limit, or when every model
failed, the answer says why in ``refused`` and carries no text; the job then finishes with its
deterministic draft, labelled as such. A model's cost is recorded like a turn's.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from prometheus_client import Counter

from taskpilot.contracts.inference import MarketingPlanAnswer, WriteMarketingPlan
from taskpilot.inference.adapters.llm import ChatModel, ChatRequest, ModelError
from taskpilot.inference.domain import prompts
from taskpilot.inference.spending import Publish, Spending, Usage
from taskpilot.tenancy import TenantDirectory

log = logging.getLogger(__name__)

PLANS = Counter(
    "taskpilot_inference_plans_total", "Marketing plans asked for, by outcome", ["outcome"]
)
NO_MODEL = "no model is configured (the embedded default has none)"


class PlanWriter:
    def __init__(
        self,
        model: ChatModel | None,
        tenants: TenantDirectory,
        spending: Spending,
        publish: Publish,
        *,
        max_tokens: int = 1200,
        deadline_s: float = 40.0,
    ):
        self._model = model
        self._tenants = tenants
        self._spending = spending
        self._publish = publish
        self._max_tokens = max_tokens
        self._deadline_s = deadline_s

    async def write(self, request: WriteMarketingPlan) -> MarketingPlanAnswer:
        """Raises ``UnknownTenantError`` for a tenant the directory does not know."""
        profile = (await self._tenants.get(request.tenant_id)).profile
        if self._model is None:
            return _refused("no_model", NO_MODEL)
        allowance = await self._spending.allowance(request.tenant_id)
        if not allowance.models:
            return _refused("budget", allowance.reason or "models are not allowed")
        messages = prompts.plan_messages(profile, request, secrets.token_hex(6))
        if not await self._spending.admit(request.tenant_id, messages):
            return _refused("rate_limit", "over the tenant's model rate limit")
        premium = allowance.premium and "L3" in self._model.tiers
        ask = ChatRequest(
            "L3" if premium else "L2",
            messages,
            max_tokens=self._max_tokens,
            allow_premium=allowance.premium,
            tenant_id=request.tenant_id,
        )
        try:
            async with asyncio.timeout(self._deadline_s):
                result = await self._model.complete(ask)
        except (ModelError, TimeoutError) as exc:
            log.warning("no model wrote the plan of %s: %r", request.tenant_id, exc)
            return _refused("model_failed", f"no model answered: {exc!r}"[:300])
        usage = Usage(
            result.tier,
            result.model,
            result.prompt_tokens,
            result.completion_tokens,
            result.cost_usd,
        )
        await self._spending.charge(request, usage, self._publish)
        text = (result.content or "").strip()
        if not text:
            PLANS.labels(outcome="empty").inc()
            spent = {"model": result.model, "cost_usd": result.cost_usd}
            return MarketingPlanAnswer(refused=f"{result.model} returned no text", **spent)
        PLANS.labels(outcome="written").inc()
        return MarketingPlanAnswer(
            text=text,
            model=result.model,
            tier="L3" if result.tier == "L3" else "L2",
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            cost_usd=result.cost_usd,
        )


def _refused(outcome: str, reason: str) -> MarketingPlanAnswer:
    PLANS.labels(outcome=outcome).inc()
    return MarketingPlanAnswer(refused=reason)
