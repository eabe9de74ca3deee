"""The weekly plan's content: facts tallied from events, a deterministic draft, and who wrote
the plan (the model, or the template with its reason), nothing invented."""

from __future__ import annotations

from datetime import date

from taskpilot.contracts.conversation import (
    ConversationHandedOff,
    LeadMessageReceived,
    ReplyComposed,
    ReplyFailed,
)
from taskpilot.contracts.inference import MarketingPlanAnswer
from taskpilot.contracts.tools import RunJob
from taskpilot.tools.plan import (
    TEMPLATE,
    empty_tally,
    last_full_week,
    plan_request,
    tally,
    weekly_plan,
    written,
)

COMMON = {"tenant_id": "acme", "correlation_id": "w", "conversation_id": "c"}
TOOLS = {
    "bookings": 3,
    "cancellations": 1,
    "payment_links": 2,
    "payments": 1,
    "paid": {"eur": 2500},
}


def week() -> list[object]:
    return [
        LeadMessageReceived(**COMMON, lead="1", sequence=1, wamid="a", kind="text"),
        LeadMessageReceived(**COMMON, lead="1", sequence=2, wamid="b", kind="text"),
        LeadMessageReceived(**COMMON, lead="2", sequence=1, wamid="c", kind="text"),
        ReplyComposed(
            **COMMON, lead="1", sequence=3, turn_id="t", text="hi", tier="L1", source="faq",
            intent="prices", cost_usd=0.001,
        ),
        ReplyFailed(**COMMON, lead="1", sequence=4, turn_id="t", reason="131047"),
        ConversationHandedOff(**COMMON, lead="2", sequence=2, reason="refund"),
    ]  # fmt: skip


def test_the_tally_counts_what_happened() -> None:
    counted = tally(empty_tally(), week())  # type: ignore[arg-type]

    assert counted["messages_in"] == 3 and counted["leads"] == ["1", "2"]
    assert counted["replies_by_source"] == {"faq": 1} and counted["intents"] == {"prices": 1}
    assert (counted["handoffs"], counted["reply_failures"]) == (1, 1)


def test_tallies_resume_from_a_checkpoint() -> None:
    events = week()
    in_two = tally(tally(empty_tally(), events[:2]), events[2:])  # type: ignore[arg-type]

    assert in_two == tally(empty_tally(), events)  # type: ignore[arg-type]


def test_the_draft_summarises_the_week() -> None:
    plan = weekly_plan(date(2031, 3, 3), tally(empty_tally(), week()), TOOLS)  # type: ignore[arg-type]

    assert plan["week"] == {"start": "2031-03-03", "end": "2031-03-10"}
    assert plan["summary"][:3] == [
        "3 messages from 2 leads; 1 replies composed, 1 handed to a human.",
        "3 bookings made, 1 cancelled.",
        "2 payment links sent, 1 paid; 25.00 EUR.",
    ]


def test_every_suggestion_names_its_fact_and_rule() -> None:
    plan = weekly_plan(date(2031, 3, 3), tally(empty_tally(), week()), TOOLS)  # type: ignore[arg-type]

    suggestions = plan["rule_based_suggestions"]
    assert len(suggestions) == 3
    assert all(s["because"] and s["rule"] for s in suggestions)
    assert "refund" in suggestions[0]["suggestion"]


def test_a_quiet_week_suggests_nothing() -> None:
    quiet = {"bookings": 0, "cancellations": 0, "payment_links": 0, "payments": 0, "paid": {}}

    assert weekly_plan(date(2031, 3, 3), empty_tally(), quiet)["rule_based_suggestions"] == []


def test_the_default_week_is_the_last_complete_one() -> None:
    assert last_full_week(date(2031, 3, 5)) == date(2031, 2, 24)
    assert last_full_week(date(2031, 3, 3)) == date(2031, 2, 24)


def draft() -> dict[str, object]:
    return weekly_plan(date(2031, 3, 3), tally(empty_tally(), week()), TOOLS)  # type: ignore[arg-type]


def test_the_model_is_given_the_drafts_facts_caused_by_the_job() -> None:
    job = RunJob(
        tenant_id="acme", correlation_id="job:j1", job_id="j1", kind="weekly_marketing_plan"
    )

    request = plan_request(draft(), job, "j1")

    assert (request.tenant_id, request.causation_id, request.job_id) == (
        "acme",
        str(job.event_id),
        "j1",
    )
    assert (request.week_start, request.week_end) == ("2031-03-03", "2031-03-10")
    assert request.facts["distinct_leads"] == 2 and len(request.suggestions) == 3


def test_a_plan_the_model_wrote_names_the_model_and_keeps_the_facts() -> None:
    answer = MarketingPlanAnswer(
        text="Plan.", model="openai/premium", tier="L3", prompt_tokens=9, cost_usd=0.01
    )

    plan = written(draft(), answer)

    assert (plan["written_by"], plan["model_generated"], plan["plan"]) == (
        "openai/premium",
        True,
        "Plan.",
    )
    assert plan["model"]["tier"] == "L3" and plan["model"]["cost_usd"] == 0.01
    assert plan["facts"] == draft()["facts"] and "template_reason" not in plan


def test_without_the_models_text_the_template_writes_it_and_says_why() -> None:
    plan = written(draft(), MarketingPlanAnswer(refused="monthly model budget used up"))

    assert (plan["written_by"], plan["model_generated"]) == (TEMPLATE, False)
    assert "monthly model budget used up" in plan["template_reason"]
    assert plan["plan"].startswith("3 messages from 2 leads;")
    assert "- Follow up on unpaid payment links." in plan["plan"] and "model" not in plan
