"""The semantic cache's rules: signatures, what counts as the same question, what may be
stored, language detection and the best-match search. Pure."""

from __future__ import annotations

import pytest

from taskpilot.inference.domain.cache import (
    CachedAnswer,
    CacheScope,
    asks_the_same,
    best_match,
    detect_language,
    entry_id,
    refusal_to_store,
    same_question,
    signature,
)

KNOWLEDGE = "Prices: basic tune-up 35 €, full service 80 €. Highlights 75 €, balayage 110 €."


def same(a: str, b: str, intent: str = "pricing", knowledge: str = KNOWLEDGE) -> bool:
    return same_question(signature(b, intent, knowledge), signature(a, intent, knowledge))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How much do highlights cost?", "What do you charge for highlights?"),
        ("How much is a full colour?", "how much is a full colour??"),
        ("¿Cuánto cuesta el tinte completo?", "¿Qué precio tiene el tinte completo?"),
    ],
)
def test_paraphrases_are_the_same_question(a: str, b: str) -> None:
    assert same(a, b)


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        ("Can I buy a 50 € gift card?", "Can I buy a 100 € gift card?", "price"),
        ("Is the deposit 20 €?", "Is the deposit 20 $?", "currency"),
        ("How much is the monthly plan?", "How much is the annual plan?", "plan"),
        ("Was kostet das Monatsabo?", "Was kostet das Jahresabo?", "plan (compound)"),
        ("How much is Rayo Care Basic?", "How much is Rayo Care Premium?", "plan"),
        ("Can I cancel my appointment?", "Can I change my appointment?", "verb"),
        ("Do you cut curly hair?", "Don't you cut curly hair?", "negation"),
        ("¿Se necesita prueba?", "¿No se necesita prueba?", "negation"),
        ("Tour for 8 people?", "Tour for three people?", "number"),
        ("How much is the tour?", "How long is the tour?", "kind of question"),
        ("Where does the tour start?", "When does the tour start?", "kind of question"),
        ("How much for highlights?", "How much for balayage?", "a term of the knowledge"),
    ],
)
def test_near_misses_are_different_questions(a: str, b: str, why: str) -> None:
    assert not same(a, b), why


def test_content_words_the_knowledge_does_not_use_may_differ() -> None:
    assert same("how much are highlights please", "how much are the highlights, roughly?")


def test_the_intent_must_agree_but_faq_and_pricing_count_as_one() -> None:
    q = "When is the Pilates class?"

    assert same_question(signature(q, "faq"), signature(q, "pricing"))
    assert not same_question(signature(q, "faq"), signature(q, "booking"))


def test_an_faq_answers_only_a_message_that_asks_the_same() -> None:
    assert asks_the_same("What time do you open on Saturday?", "What are your opening hours?")
    assert not asks_the_same("I'd like to cancel my appointment", "Can I cancel or change it?")
    assert not asks_the_same("How much are e-bikes to buy?", "How much is it to rent a bike?")


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("¿Cuánto cuesta el corte?", "es"),
        ("Quanto custa a revisão?", "pt"),
        ("Was kostet die Stunde?", "de"),
        ("Combien coûte le cours ?", "fr"),
        ("How much is the class?", "en"),
        ("👍", "xx"),
    ],
)
def test_the_language_is_guessed_from_function_words(text: str, lang: str) -> None:
    assert detect_language(text, "xx") == lang


def test_on_a_tie_the_tenants_first_language_wins() -> None:
    assert detect_language("que", "pt") == "pt"


# -- what may be stored ---------------------------------------------------------------------


def refusal(**overrides: object) -> str | None:
    values: dict[str, object] = {
        "round": 0,
        "tool_calls": 0,
        "intent": "pricing",
        "question": "how much is a colour?",
        "reply": "A full colour is 60 €.",
        "uses_personal_data": False,
    }
    return refusal_to_store(**(values | overrides))  # type: ignore[arg-type]


def test_a_general_answer_may_be_stored() -> None:
    assert refusal() is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"round": 1}, "tool-call turn"),
        ({"tool_calls": 1}, "tool-call turn"),
        ({"reply": None}, "no reply text"),
        ({"intent": "booking"}, "depends on the lead"),
        ({"intent": "payment"}, "depends on the lead"),
        ({"intent": "complaint"}, "depends on the lead"),
        ({"uses_personal_data": True}, "personal data"),
        ({"question": "my name is Ana, how much is a colour?"}, "personal data"),
        ({"question": "call me on +34 600 123 456"}, "personal data"),
        ({"reply": "Sent the price to ana@example.com"}, "personal data"),
    ],
)
def test_tool_turns_and_personal_answers_are_never_stored(
    overrides: dict[str, object], reason: str
) -> None:
    assert reason in (refusal(**overrides) or "")


# -- best match -----------------------------------------------------------------------------

SCOPE = CacheScope("t", 1, "p1", "en")


def entry(question: str, expires_at: float = 100.0) -> CachedAnswer:
    return CachedAnswer(
        entry_id(SCOPE, question),
        SCOPE,
        question,
        (1.0, 0.0),
        signature(question, "pricing"),
        question,
        "L2",
        "m",
        (),
        0.0,
        expires_at,
    )


def test_the_closest_live_entry_with_the_same_signature_wins() -> None:
    entries = [entry("price for 2 cuts"), entry("price for 3 cuts"), entry("price for 3 cuts!", 1)]
    query = signature("price for 3 cuts", "pricing")

    found = best_match(entries, [0.99, 0.95, 0.999], query, 0.9, now=10.0)

    assert found is not None and found[0].question == "price for 3 cuts" and found[1] == 0.95


def test_nothing_below_the_similarity_is_a_match() -> None:
    query = signature("price for 3 cuts", "pricing")

    assert best_match([entry("price for 3 cuts")], [0.89], query, 0.9, now=10.0) is None


def test_entry_ids_are_stable_per_scope_and_question() -> None:
    assert entry_id(SCOPE, "q") == entry_id(SCOPE, "q") != entry_id(SCOPE, "q2")
    assert entry_id(SCOPE, "q") != entry_id(CacheScope("t", 2, "p1", "en"), "q")
