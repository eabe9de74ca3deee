"""Level 1's classifier: the training maths on synthetic vectors, and the shipped model with
the real local embedder (no network)."""

from __future__ import annotations

import numpy as np
import pytest

from taskpilot.embeddings import default_embedder
from taskpilot.inference.domain import Thresholds, decide, normalise
from taskpilot.inference.domain.intents import (
    INTENTS,
    IntentGuess,
    IntentModel,
    choose_thresholds,
    folds,
    train,
)
from taskpilot.inference.train import fingerprint, load_examples, read
from taskpilot.tenancy import BusinessProfile

PROFILE = BusinessProfile(name="Barbería Sol")


def clusters(seed: int = 7) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 16, dtype=np.float32)
    vectors, labels = [], []
    for label, centre in zip(("greeting", "thanks", "other"), centres, strict=True):
        for _ in range(20):
            v = centre + rng.normal(0, 0.05, 16)
            vectors.append(v / np.linalg.norm(v))
            labels.append(label)
    return np.array(vectors, dtype=np.float32), labels


def test_training_separates_separable_intents() -> None:
    vectors, labels = clusters()

    model = train(vectors, labels)

    assert [model.guess(v).intent for v in vectors] == labels
    assert all(0.0 < model.guess(v).confidence <= 1.0 for v in vectors)


def test_folds_are_stratified_and_cover_every_example_once() -> None:
    _, labels = clusters()

    parts = folds(labels, 5)

    assert sorted(np.concatenate(parts).tolist()) == list(range(len(labels)))
    assert all(sum(labels[i] == "thanks" for i in part) == 4 for part in parts)


def test_thresholds_stop_where_held_out_precision_would_drop() -> None:
    guesses = [
        IntentGuess("greeting", 0.95, 0.9),
        IntentGuess("greeting", 0.90, 0.8),
        IntentGuess("greeting", 0.80, 0.6),  # wrong: an "other" message
        IntentGuess("greeting", 0.70, 0.5),
        IntentGuess("thanks", 0.40, 0.1),  # right, but below the floor
    ]
    labels = ["greeting", "greeting", "other", "greeting", "thanks"]

    chosen = choose_thresholds(guesses, labels, ("greeting", "thanks", "spam"))

    assert chosen == {"greeting": 0.9}


# -- the shipped model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> IntentModel:
    model = read()
    assert model is not None, "run python -m taskpilot.inference.train"
    return model[0]


def test_the_shipped_model_was_trained_on_the_shipped_data_with_this_embedder() -> None:
    shipped = read()

    assert shipped is not None
    assert shipped[1]["fingerprint"] == fingerprint(default_embedder().name)


def test_the_labelled_set_covers_every_intent_in_several_languages() -> None:
    examples = load_examples()

    assert {e["intent"] for e in examples} == set(INTENTS)
    for intent in INTENTS:
        languages = {e["lang"] for e in examples if e["intent"] == intent}
        assert len(languages) >= 4, intent


def test_only_templates_silence_and_handoff_intents_have_thresholds(shipped) -> None:
    assert set(shipped.thresholds) <= {"greeting", "thanks", "spam", "human"}
    assert all(0.6 <= t <= 1.0 for t in shipped.thresholds.values())


def decide_for(text: str, model: IntentModel):
    [vector] = default_embedder().embed_queries([normalise(text)])
    limits = Thresholds(intents=model.thresholds)
    return decide(text, model.guess(vector), [], PROFILE, limits)


@pytest.mark.parametrize(
    ("text", "intent", "template"),
    [
        ("hola", "greeting", PROFILE.greeting_template),
        ("good morning", "greeting", PROFILE.greeting_template),
        ("thank you so much", "thanks", PROFILE.thanks_template),
    ],
    ids=["hola", "good-morning", "thank-you-so-much"],
)
def test_greetings_and_thanks_are_answered_from_the_tenants_templates(
    shipped, text: str, intent: str, template: str
) -> None:
    decision = decide_for(text, shipped)

    assert (decision.tier, decision.source, decision.intent) == ("L1", "template", intent)
    assert decision.text == PROFILE.render(template)
    assert not decision.handoff


@pytest.mark.parametrize(
    "text",
    ["what is the price of a haircut?", "hola, ¿cuánto cuesta el tinte?", "can I book for 5pm?"],
)
def test_a_real_question_is_not_answered_by_a_template(shipped, text: str) -> None:
    decision = decide_for(text, shipped)

    assert decision.source != "template"
    assert decision.handoff  # no FAQ, no model: a person answers
