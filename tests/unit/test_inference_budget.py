"""Budgets, level-0 rules and single-flight."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from taskpilot.inference.domain.budget import Budget, allowance, crossed, month_of
from taskpilot.inference.domain.decisions import Allowance
from taskpilot.inference.domain.rules import is_opt_out, is_spam, level_zero, normalise
from taskpilot.inference.flight import SingleFlight

BUDGET = Budget(10.0, near_share=0.8)


@pytest.mark.parametrize(
    ("spent", "expected"),
    [
        (0.0, Allowance()),
        (7.99, Allowance()),
        (8.0, Allowance(True, False, "monthly budget nearly used up")),
        (10.0, Allowance(False, False, "monthly model budget used up")),
    ],
)
def test_near_the_cap_premium_is_off_and_at_the_cap_every_model(spent, expected) -> None:
    assert allowance(spent, BUDGET) == expected


def test_without_a_budget_everything_is_allowed() -> None:
    assert allowance(1e9, None) == Allowance()


def test_each_threshold_is_crossed_by_exactly_one_spend() -> None:
    assert crossed(7.0, 8.5, BUDGET).near and not crossed(7.0, 8.5, BUDGET).exceeded
    assert not crossed(8.5, 9.0, BUDGET).near
    both = crossed(1.0, 12.0, BUDGET)
    assert both.near and both.exceeded
    assert not crossed(10.0, 11.0, BUDGET).exceeded


def test_months_are_utc_calendar_months() -> None:
    assert month_of(datetime(2026, 11, 30, 23, 59, tzinfo=UTC)) == "2026-11"


# -- level 0 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["STOP", "Stop.", "unsubscribe", "Darme de baja", "SAIR", "Stopp!", "désabonner"]
)
def test_opt_outs_in_several_languages(text: str) -> None:
    assert is_opt_out(text)
    assert level_zero(text).intent == "opt_out"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text", ["when do you stop serving?", "stop by tomorrow?", "¿cuándo paran los buses?"]
)
def test_opt_out_words_inside_a_question_are_not_opt_outs(text: str) -> None:
    assert not is_opt_out(text)
    assert level_zero(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "Earn $500 per day from home!",
        "Congratulations, you have won a prize",
        "Invest in bitcoin and double your profit",
        "cheap SEO services for your business",
        "check this bit.ly/abc123",
    ],
)
def test_obvious_spam(text: str) -> None:
    assert is_spam(text)


@pytest.mark.parametrize(
    "text", ["How much is a haircut?", "Can I pay 50 € by card?", "I won't make it today"]
)
def test_real_messages_are_not_spam(text: str) -> None:
    assert not is_spam(text)


def test_normalise_folds_case_spaces_and_edge_punctuation() -> None:
    assert normalise("  ¿Cuánto   CUESTA?? ") == "cuánto cuesta"


# -- single-flight ----------------------------------------------------------------------------


async def test_concurrent_callers_of_one_key_share_one_run() -> None:
    flight: SingleFlight[int] = SingleFlight()
    runs = 0
    release = asyncio.Event()

    async def work() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        return 42

    callers = [asyncio.create_task(flight.run("k", work)) for _ in range(5)]
    while len(flight) == 0:
        await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*callers)

    assert runs == 1 and len(flight) == 0
    assert sorted(leader for _, leader in results) == [False] * 4 + [True]
    assert {value for value, _ in results} == {42}


async def test_an_error_reaches_every_caller_and_is_not_remembered() -> None:
    flight: SingleFlight[int] = SingleFlight()

    async def boom() -> int:
        raise RuntimeError("provider down")

    with pytest.raises(RuntimeError):
        await flight.run("k", boom)

    async def fine() -> int:
        return 1

    assert await flight.run("k", fine) == (1, True)
