"""The cascade's decisions at levels 0 and 1. Pure functions over vectors and hits; no I/O.

Level 1 answers only when it is sure: a greeting or thanks recognised by its nearest labelled
example above a similarity *and* a margin over the next intent, or an FAQ whose question is
close enough to the lead's. Anything else is handed off (no remote model configured) — the
assistant never makes an answer up.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np

from taskpilot.contracts.inference import Citation, ReplySource, Tier
from taskpilot.contracts.knowledge import KnowledgeHit
from taskpilot.embeddings import Vectors
from taskpilot.tenancy import BusinessProfile

_EMOJI_ONLY = re.compile(r"^[\W_\s\U0001F000-\U0001FAFF\u2600-\u27BF]+$")
TEMPLATE_INTENTS = ("greeting", "thanks")


@dataclass(frozen=True)
class Thresholds:
    intent_similarity: float = 0.91
    intent_margin: float = 0.025
    faq_similarity: float = 0.90


@dataclass(frozen=True)
class IntentGuess:
    intent: str
    similarity: float
    margin: float


@dataclass(frozen=True)
class Decision:
    text: str | None
    tier: Tier
    source: ReplySource
    intent: str | None
    confidence: float | None
    citations: tuple[Citation, ...] = ()
    handoff: bool = False
    handoff_reason: str | None = None


def load_examples() -> list[dict[str, str]]:
    text = resources.files("taskpilot.inference").joinpath("data/intents.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class IntentIndex:
    """Nearest labelled example, per intent, on the message embedding."""

    def __init__(self, vectors: Vectors, labels: list[str]):
        self._vectors = vectors
        self._labels = np.array(labels)
        self.intents = sorted(set(labels))

    def guess(self, vector: Vectors) -> IntentGuess:
        scores = self._vectors @ vector
        best = {i: float(scores[self._labels == i].max()) for i in self.intents}
        ranked = sorted(best.items(), key=lambda kv: kv[1], reverse=True)
        (intent, top), (_, second) = ranked[0], ranked[1]
        return IntentGuess(intent, top, top - second)


def is_empty(text: str) -> bool:
    return not text.strip() or bool(_EMOJI_ONLY.match(text.strip()))


def decide(
    text: str,
    guess: IntentGuess | None,
    hits: list[KnowledgeHit],
    profile: BusinessProfile,
    limits: Thresholds,
) -> Decision:
    if is_empty(text):
        return Decision(None, "L0", "silence", "empty", 1.0)
    faq = next((h for h in hits if h.kind == "faq" and h.answer), None)
    if faq is not None and faq.score >= limits.faq_similarity:
        return Decision(
            faq.answer,
            "L1",
            "faq",
            "faq",
            faq.score,
            (Citation(id=faq.id, kind="faq", title=faq.title, score=faq.score),),
        )
    if (
        guess is not None
        and guess.intent in TEMPLATE_INTENTS
        and guess.similarity >= limits.intent_similarity
        and guess.margin >= limits.intent_margin
    ):
        template = (
            profile.greeting_template if guess.intent == "greeting" else profile.thanks_template
        )
        return Decision(profile.render(template), "L1", "template", guess.intent, guess.similarity)
    return Decision(
        profile.render(profile.handoff_message),
        "fallback",
        "handoff",
        guess.intent if guess else None,
        guess.similarity if guess else None,
        handoff=True,
        handoff_reason="no grounded answer and no model configured",
    )
