"""Levels 2 and 3 on the scripted model fake: checks, escalation, fallbacks, tools, and the
holding reply when nothing else is right. No network."""

from __future__ import annotations

import asyncio
import json

import pytest

from taskpilot.contracts.knowledge import KnowledgeHit
from taskpilot.inference.adapters.llm import ContextTooLongError, ModelUnavailableError
from taskpilot.inference.cascade import Cascade, Turn
from taskpilot.inference.domain.decisions import Allowance
from taskpilot.inference.domain.intents import IntentGuess
from taskpilot.inference.domain.prompts import assemble, data_blocks
from taskpilot.inference.testing import ScriptedChatModel
from taskpilot.tenancy import BusinessProfile

PROFILE = BusinessProfile(name="Rayo Bikes", handoff_message="A person from {name} will reply.")
HITS = [KnowledgeHit(id="c1", kind="chunk", title="Workshop", text="Full service 80 €.", score=0.8)]
HOLDING = "A person from Rayo Bikes will reply."


def turn(tools: list[str] | None = None, text: str = "how much is a full service?") -> Turn:
    blocks = data_blocks(HITS)
    return Turn(
        "t1",
        PROFILE,
        IntentGuess("pricing", 0.7, 0.3),
        assemble(PROFILE, blocks, [], text, "n"),
        tools or ["hand_off"],
        blocks,
        text,
    )


def reply(text: str, sources: list[int] | None = None, status: str = "answered") -> str:
    return json.dumps(
        {"reply": text, "sources": [1] if sources is None else sources, "status": status}
    )


@pytest.fixture
def model() -> ScriptedChatModel:
    return ScriptedChatModel()


async def test_a_good_level_two_answer_is_final(model: ScriptedChatModel) -> None:
    model.queue("L2", model.text("L2", reply("A full service is 80 €.")))

    outcome = await Cascade(model).answer(turn(), "L2", Allowance())

    decision = outcome.decision
    assert (decision.text, decision.tier, decision.source) == (
        "A full service is 80 €.",
        "L2",
        "knowledge",
    )
    assert [c.id for c in decision.citations] == ["c1"]
    assert outcome.cost_usd == pytest.approx(200 * 1e-7 + 40 * 4e-7)
    assert (outcome.model, outcome.escalations) == ("scripted-l2", [])


@pytest.mark.parametrize(
    ("bad", "cause"),
    [
        ("It's 80 euros I think", "invalid answer"),
        (reply("A full service is 95 €."), "95"),
        (reply("Not sure", status="unsure"), "unsure"),
        (reply("A full service is 80 €.", sources=[]), "without citing"),
    ],
)
async def test_a_failed_level_two_answer_escalates_and_both_are_paid_for(
    model: ScriptedChatModel, bad: str, cause: str
) -> None:
    model.queue("L2", model.text("L2", bad))
    model.queue("L3", model.text("L3", reply("The full service costs 80 €.")))

    outcome = await Cascade(model).answer(turn(), "L2", Allowance())

    assert outcome.decision.tier == "L3" and outcome.model == "scripted-l3"
    assert cause in outcome.escalations[0]
    assert outcome.prompt_tokens == 400
    assert outcome.cost_usd == pytest.approx(200 * 1e-7 + 40 * 4e-7 + 200 * 3e-6 + 40 * 1.5e-5)


async def test_without_premium_a_failed_answer_is_handed_off(model: ScriptedChatModel) -> None:
    model.queue("L2", model.text("L2", reply("It is 95 €.")))
    model.queue("L3", model.text("L3", reply("The full service costs 80 €.")))

    outcome = await Cascade(model).answer(turn(), "L2", Allowance(premium=False))

    assert (outcome.decision.text, outcome.decision.handoff) == (HOLDING, True)
    assert "95" in (outcome.decision.handoff_reason or "")
    assert [r.tier for r in model.requests] == ["L2"]


async def test_a_failed_premium_answer_is_the_holding_reply(model: ScriptedChatModel) -> None:
    model.queue("L3", model.text("L3", reply("Only 10 € today!")))

    outcome = await Cascade(model).answer(turn(), "L3", Allowance())

    assert (outcome.decision.text, outcome.decision.tier, outcome.decision.handoff) == (
        HOLDING,
        "fallback",
        True,
    )
    assert outcome.cost_usd > 0  # the failed answer was still paid for


async def test_an_outage_of_level_two_is_answered_by_level_three(model: ScriptedChatModel) -> None:
    model.queue("L3", model.text("L3", reply("A full service is 80 €.")))

    outcome = await Cascade(model).answer(turn(), "L2", Allowance())

    assert outcome.decision.tier == "L3"
    assert outcome.escalations == ["provider outage"]


async def test_a_premium_outage_falls_down_to_level_two(model: ScriptedChatModel) -> None:
    model.queue("L3", ModelUnavailableError("down"))
    model.queue("L2", model.text("L2", reply("A full service is 80 €.")))

    outcome = await Cascade(model).answer(turn(), "L3", Allowance())

    assert outcome.decision.tier == "L2"


async def test_an_outage_of_everything_is_the_holding_reply(model: ScriptedChatModel) -> None:
    outcome = await Cascade(model).answer(turn(), "L2", Allowance())

    assert (outcome.decision.text, outcome.decision.handoff) == (HOLDING, True)
    assert outcome.decision.handoff_reason == "every model is unavailable"
    assert outcome.cost_usd == 0.0


async def test_a_prompt_too_long_for_every_model_is_the_holding_reply(
    model: ScriptedChatModel,
) -> None:
    model.queue("L2", ContextTooLongError("9000 tokens"))

    outcome = await Cascade(model).answer(turn(), "L2", Allowance())

    assert outcome.decision.handoff and "9000 tokens" in (outcome.decision.handoff_reason or "")


async def test_a_model_that_will_not_guess_says_so_in_its_words(model: ScriptedChatModel) -> None:
    model.queue("L2", model.text("L2", reply("Let me check with the team!", [], "handoff")))

    outcome = await Cascade(model).answer(turn(), "L2", Allowance())

    assert (outcome.decision.text, outcome.decision.tier, outcome.decision.handoff) == (
        "Let me check with the team!",
        "L2",
        True,
    )


async def test_a_handoff_text_with_numbers_becomes_the_holding_reply(
    model: ScriptedChatModel,
) -> None:
    model.queue(
        "L2", model.text("L2", reply("It's probably 70 €, the team will confirm", [], "handoff"))
    )

    outcome = await Cascade(model).answer(turn(), "L2", Allowance())

    assert outcome.decision.text == HOLDING


# -- tools ----------------------------------------------------------------------------------


async def test_valid_tool_calls_are_returned_for_the_conversation_to_run(
    model: ScriptedChatModel,
) -> None:
    model.queue("L2", model.calls("L2", ("check_availability", '{"days": 2}')))

    outcome = await Cascade(model).answer(
        turn(["check_availability", "hand_off"]), "L2", Allowance()
    )

    [call] = outcome.tool_calls
    assert (call.id, call.tool, call.arguments) == ("call_0", "check_availability", {"days": 2})
    assert outcome.decision.text is None and not outcome.decision.handoff
    assert [t["function"]["name"] for t in model.requests[0].tools] == [
        "check_availability",
        "hand_off",
    ]


async def test_a_call_to_a_tool_not_offered_escalates_then_hands_off(
    model: ScriptedChatModel,
) -> None:
    model.queue("L2", model.calls("L2", ("trigger_workflow", '{"workflow": "refund"}')))
    model.queue("L3", model.calls("L3", ("trigger_workflow", '{"workflow": "refund"}')))

    outcome = await Cascade(model).answer(turn(["check_availability"]), "L2", Allowance())

    assert outcome.tool_calls == [] and outcome.decision.handoff
    assert "trigger_workflow" in (outcome.decision.handoff_reason or "")


async def test_the_hand_off_tool_hands_off_with_its_reason(model: ScriptedChatModel) -> None:
    model.queue("L2", model.calls("L2", ("hand_off", '{"reason": "wants a custom frame"}')))

    outcome = await Cascade(model).answer(turn(), "L2", Allowance())

    assert (outcome.decision.tier, outcome.decision.handoff) == ("L2", True)
    assert outcome.decision.handoff_reason == "wants a custom frame"
    assert outcome.tool_calls == []


async def test_models_slower_than_the_deadline_get_the_holding_reply() -> None:
    class Stuck(ScriptedChatModel):
        async def complete(self, request):  # type: ignore[no-untyped-def]
            await asyncio.Event().wait()  # never answers

    outcome = await Cascade(Stuck(), deadline_s=0.05).answer(turn(), "L2", Allowance())

    assert (outcome.decision.text, outcome.decision.handoff_reason) == (
        HOLDING,
        "the models were too slow",
    )
