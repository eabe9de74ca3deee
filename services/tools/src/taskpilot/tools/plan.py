"""The weekly marketing plan's content, from the week's recorded facts only. Pure.

A deterministic draft comes first: a summary of the week (conversation events and the tools'
own bookings and payments) and a rule-based checklist whose every item names the fact and the
rule that produced it. The inference service's model then writes the plan from those facts;
when it cannot (no model configured, budget, outage) the draft is the plan, and
``written_by`` says ``"template"`` with the reason, never a model's name.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

from taskpilot.contracts import Message
from taskpilot.contracts.inference import MarketingPlanAnswer, WriteMarketingPlan

TEMPLATE = "template"
HANDOFF_SHARE_RULE = 0.2
UNANSWERED_RULE = 0.1


def week_bounds(week_start: date) -> tuple[date, date]:
    return week_start, week_start + timedelta(days=7)


def last_full_week(today: date) -> date:
    """Monday of the last complete Monday-to-Sunday week before ``today``."""
    return today - timedelta(days=today.weekday() + 7)


def empty_tally() -> dict[str, Any]:
    return {
        "messages_in": 0,
        "leads": [],
        "replies": 0,
        "replies_by_source": {},
        "intents": {},
        "reply_failures": 0,
        "handoffs": 0,
        "handoff_reasons": {},
        "cost_usd": 0.0,
    }


def tally(state: dict[str, Any], events: list[Message]) -> dict[str, Any]:
    """Add conversation events to a JSON-serialisable tally (checkpointed between steps)."""
    leads = set(state["leads"])
    sources = Counter(state["replies_by_source"])
    intents = Counter(state["intents"])
    reasons = Counter(state["handoff_reasons"])
    out = dict(state)
    for event in events:
        data = event.model_dump()
        if event.type == "LeadMessageReceived":
            out["messages_in"] += 1
            leads.add(data["lead"])
        elif event.type == "ReplyComposed":
            out["replies"] += 1
            sources[str(data["source"])] += 1
            if data.get("intent"):
                intents[data["intent"]] += 1
            out["cost_usd"] = round(out["cost_usd"] + float(data.get("cost_usd", 0.0)), 6)
        elif event.type == "ReplyFailed":
            out["reply_failures"] += 1
        elif event.type == "ConversationHandedOff":
            out["handoffs"] += 1
            reasons[data["reason"]] += 1
    out.update(
        leads=sorted(leads),
        replies_by_source=dict(sources),
        intents=dict(intents),
        handoff_reasons=dict(reasons),
    )
    return out


def weekly_plan(
    week_start: date, conversations: dict[str, Any], tools: dict[str, Any]
) -> dict[str, Any]:
    start, end = week_bounds(week_start)
    leads = len(conversations["leads"])
    facts = {
        "messages_from_leads": conversations["messages_in"],
        "distinct_leads": leads,
        "replies_composed": conversations["replies"],
        "replies_by_source": conversations["replies_by_source"],
        "intents": conversations["intents"],
        "reply_failures": conversations["reply_failures"],
        "handoffs": conversations["handoffs"],
        "handoff_reasons": conversations["handoff_reasons"],
        "model_cost_usd": conversations["cost_usd"],
        **tools,
    }
    return {
        "kind": "weekly_marketing_plan",
        "week": {"start": start.isoformat(), "end": end.isoformat()},
        "facts": facts,
        "summary": _summary(facts),
        "rule_based_suggestions": _suggestions(facts),
    }


def plan_request(draft: dict[str, Any], cause: Message, job_id: str) -> WriteMarketingPlan:
    """What the model is given: the draft's facts, caused by the job's command."""
    return cause.caused(
        WriteMarketingPlan,
        job_id=job_id,
        week_start=draft["week"]["start"],
        week_end=draft["week"]["end"],
        facts=draft["facts"],
        summary=draft["summary"],
        suggestions=draft["rule_based_suggestions"],
    )


def written(draft: dict[str, Any], answer: MarketingPlanAnswer) -> dict[str, Any]:
    """The job's result: the model's plan when it wrote one, else the labelled draft."""
    if answer.text is None or answer.model is None:
        return templated(draft, answer.refused or "the model returned no plan")
    return {
        **draft,
        "written_by": answer.model,
        "model_generated": True,
        "plan": answer.text,
        "model": {
            "name": answer.model,
            "tier": answer.tier,
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "cost_usd": answer.cost_usd,
        },
    }


def templated(draft: dict[str, Any], reason: str) -> dict[str, Any]:
    lines = [
        *draft["summary"],
        *(f"- {s['suggestion']} ({s['because']})" for s in draft["rule_based_suggestions"]),
    ]
    return {
        **draft,
        "written_by": TEMPLATE,
        "model_generated": False,
        "plan": "\n".join(lines),
        "template_reason": f"No model wrote this plan: {reason}. It is the deterministic "
        "summary of the week's recorded facts with rule-based suggestions.",
    }


def _summary(facts: dict[str, Any]) -> list[str]:
    lines = [
        f"{facts['messages_from_leads']} messages from {facts['distinct_leads']} leads; "
        f"{facts['replies_composed']} replies composed, {facts['handoffs']} handed to a human.",
        f"{facts['bookings']} bookings made, {facts['cancellations']} cancelled.",
        f"{facts['payment_links']} payment links sent, {facts['payments']} paid"
        + "".join(f"; {amount / 100:.2f} {cur.upper()}" for cur, amount in facts["paid"].items())
        + ".",
    ]
    if facts["intents"]:
        top = sorted(facts["intents"].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        lines.append("Most asked about: " + ", ".join(f"{k} ({v})" for k, v in top) + ".")
    return lines


def _suggestions(facts: dict[str, Any]) -> list[dict[str, str]]:
    found = []
    conversations = max(facts["distinct_leads"], 1)
    share = facts["handoffs"] / conversations
    if facts["handoffs"] and share > HANDOFF_SHARE_RULE:
        top = max(facts["handoff_reasons"].items(), key=lambda kv: (kv[1], kv[0]))[0]
        found.append(
            {
                "suggestion": f"Add answers for the most common handoff reason ({top!r}) to "
                "the knowledge base.",
                "because": f"{facts['handoffs']} of {facts['distinct_leads']} leads were handed "
                f"off ({share:.0%})",
                "rule": f"handoffs above {HANDOFF_SHARE_RULE:.0%} of leads",
            }
        )
    if facts["payment_links"] and facts["payments"] < facts["payment_links"]:
        unpaid = facts["payment_links"] - facts["payments"]
        found.append(
            {
                "suggestion": "Follow up on unpaid payment links.",
                "because": f"{unpaid} of {facts['payment_links']} links sent were not paid",
                "rule": "any unpaid payment link",
            }
        )
    if facts["reply_failures"] > UNANSWERED_RULE * max(facts["replies_composed"], 1):
        found.append(
            {
                "suggestion": "Check the WhatsApp number's health: replies failed to send.",
                "because": f"{facts['reply_failures']} replies failed to send",
                "rule": f"failures above {UNANSWERED_RULE:.0%} of replies",
            }
        )
    return found
