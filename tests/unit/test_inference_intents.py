"""Level 1 with the real local embedder and the shipped labelled examples (no network)."""

from __future__ import annotations

import pytest

from taskpilot.embeddings import default_embedder
from taskpilot.inference.domain import IntentIndex, Thresholds, decide, load_examples
from taskpilot.inference.service import build_intent_index
from taskpilot.tenancy import BusinessProfile

PROFILE = BusinessProfile(name="Barbería Sol")


@pytest.fixture(scope="module")
def intents() -> IntentIndex:
    return build_intent_index(default_embedder())


def decide_for(text: str, intents: IntentIndex):
    [vector] = default_embedder().embed_queries([text])
    return decide(text, intents.guess(vector), [], PROFILE, Thresholds())


def test_the_shipped_examples_label_greetings_thanks_and_the_rest() -> None:
    assert {e["intent"] for e in load_examples()} == {"greeting", "thanks", "other"}


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
    intents, text: str, intent: str, template: str
) -> None:
    decision = decide_for(text, intents)

    assert (decision.tier, decision.source, decision.intent) == ("L1", "template", intent)
    assert decision.text == PROFILE.render(template)
    assert not decision.handoff


def test_a_real_question_is_not_answered_by_a_template(intents) -> None:
    decision = decide_for("what is the price of a haircut?", intents)

    assert decision.source != "template"
    assert decision.intent != "greeting"
    assert decision.handoff  # no FAQ, no model: a person answers
