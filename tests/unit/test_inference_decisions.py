"""Level 0 and level 1 decisions on hand-made vectors: no model, no I/O."""

from __future__ import annotations

import numpy as np
import pytest

from taskpilot.contracts.inference import Citation
from taskpilot.contracts.knowledge import KnowledgeHit
from taskpilot.inference.domain import (
    Decision,
    IntentGuess,
    IntentIndex,
    Thresholds,
    decide,
    is_empty,
)
from taskpilot.tenancy import BusinessProfile

LIMITS = Thresholds(intent_similarity=0.9, intent_margin=0.05, faq_similarity=0.85)
PROFILE = BusinessProfile(
    name="Barbería Sol",
    greeting_template="¡Hola! Bienvenido a {name}. ¿En qué te ayudamos?",
    thanks_template="¡A ti! Un saludo de {name}.",
    handoff_message="Alguien de {name} te responde enseguida.",
)


def unit(*components: float) -> np.ndarray:
    vector = np.array(components, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def faq(score: float, answer: str | None = "A haircut is 15 EUR.", id_: str = "faq-1"):
    return KnowledgeHit(
        id=id_, kind="faq", title="How much is a haircut?", text="", answer=answer, score=score
    )


def chunk(score: float) -> KnowledgeHit:
    return KnowledgeHit(id="chunk-1", kind="chunk", title="Prices", text="...", score=score)


GREETING = IntentGuess("greeting", similarity=0.97, margin=0.2)
THANKS = IntentGuess("thanks", similarity=0.95, margin=0.1)
OTHER = IntentGuess("other", similarity=0.99, margin=0.3)


def handoff(guess: IntentGuess | None) -> Decision:
    return Decision(
        "Alguien de Barbería Sol te responde enseguida.",
        "fallback",
        "handoff",
        guess.intent if guess else None,
        guess.similarity if guess else None,
        handoff=True,
        handoff_reason="no grounded answer and no model configured",
    )


# -- IntentIndex ---------------------------------------------------------------------------


@pytest.fixture
def index() -> IntentIndex:
    vectors = np.stack(
        [
            unit(1, 0, 0),  # greeting
            unit(1, 1, 0),  # greeting
            unit(0, 1, 0),  # thanks
            unit(0, 0, 1),  # other
        ]
    )
    return IntentIndex(vectors, ["greeting", "greeting", "thanks", "other"])


def test_the_index_knows_its_intents(index) -> None:
    assert index.intents == ["greeting", "other", "thanks"]


def test_the_nearest_example_of_each_intent_decides(index) -> None:
    guess = index.guess(unit(1, 0, 0))

    assert guess.intent == "greeting"
    assert guess.similarity == pytest.approx(1.0)
    assert guess.margin == pytest.approx(1.0)


def test_the_margin_is_over_the_best_example_of_the_next_intent(index) -> None:
    vector = unit(0.2, 1, 0)

    guess = index.guess(vector)

    greeting = float(unit(1, 1, 0) @ vector)
    thanks = float(unit(0, 1, 0) @ vector)
    assert guess.intent == "thanks"
    assert guess.similarity == pytest.approx(thanks)
    assert guess.margin == pytest.approx(thanks - greeting)


# -- level 0: nothing to answer ------------------------------------------------------------


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


# -- level 1: FAQ --------------------------------------------------------------------------


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
    decision = decide("haircut price", OTHER, [faq(0.84)], PROFILE, LIMITS)

    assert decision == handoff(OTHER)


def test_an_faq_below_the_threshold_falls_through_to_a_template() -> None:
    decision = decide("hola", GREETING, [faq(0.6)], PROFILE, LIMITS)

    assert decision.source == "template"


def test_an_faq_wins_over_a_greeting() -> None:
    decision = decide("hi, how much?", GREETING, [faq(0.9)], PROFILE, LIMITS)

    assert decision.source == "faq"


def test_chunks_and_faqs_without_answer_are_never_answers() -> None:
    hits = [chunk(0.99), faq(0.98, answer=None, id_="faq-0"), faq(0.95, id_="faq-2")]

    decision = decide("price?", OTHER, hits, PROFILE, LIMITS)

    assert decision.text == "A haircut is 15 EUR."
    assert [c.id for c in decision.citations] == ["faq-2"]


# -- level 1: templates --------------------------------------------------------------------


def test_a_sure_greeting_gets_the_tenants_greeting() -> None:
    decision = decide("hola", GREETING, [], PROFILE, LIMITS)

    assert decision == Decision(
        "¡Hola! Bienvenido a Barbería Sol. ¿En qué te ayudamos?", "L1", "template", "greeting", 0.97
    )


def test_sure_thanks_get_the_tenants_thanks() -> None:
    decision = decide("gracias", THANKS, [], PROFILE, LIMITS)

    assert decision == Decision(
        "¡A ti! Un saludo de Barbería Sol.", "L1", "template", "thanks", 0.95
    )


def test_default_templates_are_rendered_with_the_business_name() -> None:
    decision = decide("hi", GREETING, [], BusinessProfile(name="Acme Cuts"), LIMITS)

    assert decision.text is not None
    assert "Acme Cuts" in decision.text
    assert "{name}" not in decision.text


@pytest.mark.parametrize(
    "guess",
    [
        IntentGuess("greeting", similarity=0.89, margin=0.2),
        IntentGuess("thanks", similarity=0.89, margin=0.2),
    ],
    ids=["greeting", "thanks"],
)
def test_a_template_intent_below_the_similarity_is_handed_off(guess) -> None:
    assert decide("hmm", guess, [], PROFILE, LIMITS) == handoff(guess)


@pytest.mark.parametrize(
    "guess",
    [
        IntentGuess("greeting", similarity=0.99, margin=0.049),
        IntentGuess("thanks", similarity=0.99, margin=0.01),
    ],
    ids=["greeting", "thanks"],
)
def test_a_template_intent_with_a_low_margin_is_handed_off(guess) -> None:
    assert decide("hi thanks", guess, [], PROFILE, LIMITS) == handoff(guess)


def test_a_template_intent_exactly_at_both_limits_is_answered() -> None:
    guess = IntentGuess("greeting", LIMITS.intent_similarity, LIMITS.intent_margin)

    assert decide("hi", guess, [], PROFILE, LIMITS).source == "template"


def test_other_intents_are_never_answered_with_a_template() -> None:
    assert decide("price?", OTHER, [], PROFILE, LIMITS) == handoff(OTHER)


def test_without_a_guess_nothing_grounded_is_handed_off() -> None:
    assert decide("price?", None, [], PROFILE, LIMITS) == handoff(None)


def test_index_and_decision_together(index) -> None:
    guess = index.guess(unit(1, 0.05, 0))

    decision = decide("hey", guess, [], PROFILE, LIMITS)

    assert (decision.source, decision.intent) == ("template", "greeting")


def test_default_thresholds_are_strict() -> None:
    limits = Thresholds()

    assert 0.0 < limits.intent_margin < limits.intent_similarity <= 1.0
    assert 0.0 < limits.faq_similarity <= 1.0
