"""The weekly marketing plan written by inference's models: premium first, the week's facts as
delimited data, the spend recorded against the budget, and a reason instead of text whenever
no model may or can write it. Hand-written fakes (scripted model, bus, directory); no network."""

from __future__ import annotations

from taskpilot.contracts.inference import TenantBudgetExceeded, WriteMarketingPlan
from taskpilot.inference.adapters.llm import ModelUnavailableError
from taskpilot.inference.adapters.spend import MemorySpendLedger
from taskpilot.inference.domain.budget import Budget
from taskpilot.inference.planning import NO_MODEL, PlanWriter
from taskpilot.inference.spending import Spending
from taskpilot.inference.testing import ScriptedChatModel
from tests.unit.test_inference_service import NOW, Bus, Directory

FACTS = {"messages_from_leads": 14, "distinct_leads": 6, "handoffs": 3, "bookings": 2}


def request() -> WriteMarketingPlan:
    return WriteMarketingPlan(
        tenant_id="aurora",
        correlation_id="job:j1",
        job_id="j1",
        week_start="2031-03-03",
        week_end="2031-03-10",
        facts=FACTS,
        summary=["14 messages from 6 leads."],
        suggestions=[{"suggestion": "Add answers.", "because": "3 handoffs", "rule": "r"}],
    )


def writer(
    model: ScriptedChatModel | None, budget: Budget | None = None
) -> tuple[PlanWriter, Bus, Spending]:
    async def budget_of(_tenant: str) -> Budget | None:
        return budget

    bus = Bus()
    spending = Spending(MemorySpendLedger(), budget_of, clock=lambda: NOW)
    plans = PlanWriter(model, Directory(), spending, bus.publish)  # type: ignore[arg-type]
    return plans, bus, spending


async def test_the_premium_model_writes_the_plan_from_the_facts_given_as_data() -> None:
    model = ScriptedChatModel()
    model.queue("L3", model.text("L3", "Last week 6 leads wrote 14 messages. 1. ...", 500, 300))
    plans, _bus, spending = writer(model)

    answer = await plans.write(request())

    assert (answer.text, answer.model, answer.tier) == (
        "Last week 6 leads wrote 14 messages. 1. ...",
        "scripted-l3",
        "L3",
    )
    assert (answer.prompt_tokens, answer.completion_tokens, answer.refused) == (500, 300, None)
    assert answer.cost_usd == 500 * 3e-6 + 300 * 1.5e-5
    [asked] = model.requests
    system, data = (m["content"] for m in asked.messages)
    assert "marketing plan" in system and '"messages_from_leads": 14' not in system
    assert 'kind="week_facts"' in data and '"messages_from_leads": 14' in data
    spent = await spending.ledger.spent("aurora", spending.month())
    assert spent.usd == answer.cost_usd and spent.tokens == 800


async def test_near_the_budget_the_standard_model_writes_it() -> None:
    model = ScriptedChatModel()
    model.queue("L2", model.text("L2", "A short plan."))
    plans, _bus, _spending = writer(model, Budget(0.001, near_share=0.0))

    answer = await plans.write(request())

    assert (answer.model, answer.tier) == ("scripted-l2", "L2")
    assert model.requests[0].allow_premium is False


async def test_over_the_budget_no_model_is_asked() -> None:
    model = ScriptedChatModel()
    model.queue("L3", model.text("L3", "x" * 10, 400, 400))
    plans, bus, _spending = writer(model, Budget(0.001))
    first = await plans.write(request())  # 0.0072 USD: over the 0.001 budget

    second = await plans.write(request())

    assert first.text and bus.of(TenantBudgetExceeded)
    assert (second.text, second.refused) == (None, "monthly model budget used up")
    assert len(model.requests) == 1


async def test_without_a_model_or_when_every_model_fails_the_answer_says_why() -> None:
    without, _bus, _spending = writer(None)
    failing_model = ScriptedChatModel()
    failing_model.queue("L3", ModelUnavailableError("503"))
    failing, _bus, _spending = writer(failing_model)

    assert (await without.write(request())).refused == NO_MODEL
    refused = await failing.write(request())
    assert refused.text is None and refused.refused is not None and "503" in refused.refused
