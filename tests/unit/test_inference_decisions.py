"""Levels 0 and 1 and the tier choice, on hand-made guesses and hits: no model, no I/O."""

from __future__ import annotations

import pytest

from taskpilot.contracts.inference import Citation
from taskpilot.contracts.knowledge import KnowledgeHit
from taskpilot.inference.domain import (
    Allowance,
    Decision,
    IntentGuess,
    Thresholds,
    answer_locally,
    decide,
    first_tier,
    is_empty,
    next_tier,
)
from taskpilot.tenancy import BusinessProfile

LIMITS = Thresholds(
    faq_similarity=0.85,
    intents={"greeting": 0.8, "thanks": 0.8, "spam": 0.9, "human": 0.85, "complaint": 0.7},
)
PROFILE = BusinessProfile(
    name="Barbería Sol",
    greeting_template="¡Hola! Bienvenido a {name}. ¿En qué te ayudamos?",
    thanks_template="¡A ti! Un saludo de {name}.",
    handoff_message="Alguien de {name} te responde enseguida.",
)


def faq(score: float, answer: str | None = "A haircut is 15 EUR.", id_: str = "faq-1"):
    return KnowledgeHit(
        id=id_, kind="faq", title="How much is a haircut?", text="", answer=answer, score=score
    )


def chunk(score: float) -> KnowledgeHit:
    return KnowledgeHit(id="chunk-1", kind="chunk", title="Prices", text="...", score=score)


GREETING = IntentGuess("greeting", confidence=0.97, margin=0.9)
THANKS = IntentGuess("thanks", confidence=0.95, margin=0.9)
OTHER = IntentGuess("other", confidence=0.99, margin=0.9)


def handoff(guess: IntentGuess | None) -> Decision:
    return Decision(
        "Alguien de Barbería Sol te responde enseguida.",
        "fallback",
        "handoff",
        guess.intent if guess else None,
        guess.confidence if guess else None,
        handoff=True,
        handoff_reason="no grounded answer and no model configured",
    )


# -- level 0 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "   ", "\n", "👍", "🙏🏽", "❤️", "😂😂😂", "👍 👍", "!!", "..."]
)
def test_empty_and_emoji_only_messages_are_empty(text: str) -> None:
    assert is_empty(text)


@pytest.mark.parametrize("text", ["ok", "5", "hola 👋", "你好", "¿?a", "Привет"])
def test_messages_with_words_are_not_empty(text: str) -> None:
    assert not is_empty(text)


@pytest.mark.parametrize("text", ["", "👍", "🙏"])
def test_empty_messages_are_answered_with_silence(text: str) -> None:
    decision = decide(text, GREETING, [faq(0.99)], PROFILE, LIMITS)

    assert decision == Decision(None, "L0", "silence", "empty", 1.0)


@pytest.mark.parametrize("text", ["STOP", "stop.", "Baja", "darme de baja", "SAIR", "Abmelden"])
def test_an_opt_out_is_silence_and_a_handoff(text: str) -> None:
    decision = decide(text, GREETING, [faq(0.99)], PROFILE, LIMITS)

    assert (decision.text, decision.tier, decision.intent) == (None, "L0", "opt_out")
    assert decision.handoff


def test_obvious_spam_is_silence_without_handoff() -> None:
    decision = decide(
        "Invest in bitcoin now and earn double profit every week", OTHER, [], PROFILE, LIMITS
    )

    assert (decision.text, decision.tier, decision.intent, decision.handoff) == (
        None,
        "L0",
        "spam",
        False,
    )


# -- level 1: FAQ ---------------------------------------------------------------------------


def test_a_close_faq_is_answered_with_its_answer_and_cited() -> None:
    decision = decide("how much for a haircut", OTHER, [faq(0.93)], PROFILE, LIMITS)

    assert decision == Decision(
        "A haircut is 15 EUR.",
        "L1",
        "faq",
        "faq",
        0.93,
        (Citation(id="faq-1", kind="faq", title="How much is a haircut?", score=0.93),),
    )


def test_an_faq_exactly_at_the_threshold_is_answered() -> None:
    decision = decide("haircut price", None, [faq(LIMITS.faq_similarity)], PROFILE, LIMITS)

    assert decision.source == "faq"


def test_an_faq_below_the_threshold_falls_through_to_a_handoff() -> None:
    assert decide("haircut price", OTHER, [faq(0.84)], PROFILE, LIMITS) == handoff(OTHER)


def test_an_faq_below_the_threshold_falls_through_to_a_template() -> None:
    assert decide("hola", GREETING, [faq(0.6)], PROFILE, LIMITS).source == "template"


def test_an_faq_wins_over_a_greeting() -> None:
    assert decide("hi, how much?", GREETING, [faq(0.9)], PROFILE, LIMITS).source == "faq"


def test_a_sure_complaint_is_not_answered_with_a_close_faq() -> None:
    complaint = IntentGuess("complaint", confidence=0.9, margin=0.5)

    assert (
        answer_locally("haircut price was wrong!", complaint, [faq(0.9)], PROFILE, LIMITS) is None
    )


def test_chunks_and_faqs_without_answer_are_never_answers() -> None:
    hits = [chunk(0.99), faq(0.98, answer=None, id_="faq-0"), faq(0.95, id_="faq-2")]

    decision = decide("price?", OTHER, hits, PROFILE, LIMITS)

    assert decision.text == "A haircut is 15 EUR."
    assert [c.id for c in decision.citations] == ["faq-2"]


# -- level 1: templates, silence, handoff ---------------------------------------------------


def test_a_sure_greeting_gets_the_tenants_greeting() -> None:
    assert decide("hola", GREETING, [], PROFILE, LIMITS) == Decision(
        "¡Hola! Bienvenido a Barbería Sol. ¿En qué te ayudamos?", "L1", "template", "greeting", 0.97
    )


def test_sure_thanks_get_the_tenants_thanks() -> None:
    assert decide("gracias", THANKS, [], PROFILE, LIMITS) == Decision(
        "¡A ti! Un saludo de Barbería Sol.", "L1", "template", "thanks", 0.95
    )


def test_default_templates_are_rendered_with_the_business_name() -> None:
    decision = decide("hi", GREETING, [], BusinessProfile(name="Acme Cuts"), LIMITS)

    assert decision.text is not None
    assert "Acme Cuts" in decision.text and "{name}" not in decision.text


def test_sure_spam_is_silence_at_level_one() -> None:
    spam = IntentGuess("spam", confidence=0.95, margin=0.9)

    assert decide("cheap followers", spam, [], PROFILE, LIMITS) == Decision(
        None, "L1", "silence", "spam", 0.95
    )


def test_a_sure_request_for_a_person_is_a_handoff_at_level_one() -> None:
    human = IntentGuess("human", confidence=0.9, margin=0.8)

    decision = decide("a person please", human, [], PROFILE, LIMITS)

    assert (decision.tier, decision.source, decision.handoff) == ("L1", "handoff", True)
    assert decision.text == "Alguien de Barbería Sol te responde enseguida."


@pytest.mark.parametrize(
    "guess",
    [
        IntentGuess("greeting", confidence=0.79, margin=0.5),
        IntentGuess("thanks", confidence=0.5, margin=0.2),
        IntentGuess("spam", confidence=0.89, margin=0.8),
        IntentGuess("human", confidence=0.84, margin=0.8),
    ],
    ids=["greeting", "thanks", "spam", "human"],
)
def test_an_auto_intent_below_its_threshold_is_not_answered_locally(guess) -> None:
    assert answer_locally("hmm", guess, [], PROFILE, LIMITS) is None
    assert decide("hmm", guess, [], PROFILE, LIMITS) == handoff(guess)


def test_an_auto_intent_exactly_at_its_threshold_is_answered() -> None:
    guess = IntentGuess("greeting", LIMITS.intents["greeting"], 0.1)

    assert decide("hi", guess, [], PROFILE, LIMITS).source == "template"


def test_intents_without_a_threshold_are_never_answered_automatically() -> None:
    pricing = IntentGuess("pricing", confidence=1.0, margin=1.0)

    assert answer_locally("price?", pricing, [], PROFILE, LIMITS) is None
    assert decide("price?", OTHER, [], PROFILE, LIMITS) == handoff(OTHER)


def test_without_a_guess_nothing_grounded_is_handed_off() -> None:
    assert decide("price?", None, [], PROFILE, LIMITS) == handoff(None)


# -- which model tier -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "allowance", "tier"),
    [
        ("pricing", Allowance(), "L2"),
        ("complex", Allowance(), "L3"),
        ("complaint", Allowance(), "L3"),
        ("complex", Allowance(premium=False), "L2"),
    ],
)
def test_complex_and_complaints_go_straight_to_premium_when_allowed(
    intent: str, allowance: Allowance, tier: str
) -> None:
    assert first_tier(IntentGuess(intent, 0.9, 0.5), allowance) == tier


def test_level_two_escalates_to_three_only_when_premium_is_allowed() -> None:
    assert next_tier("L2", Allowance()) == "L3"
    assert next_tier("L2", Allowance(premium=False)) is None
    assert next_tier("L3", Allowance()) is None
