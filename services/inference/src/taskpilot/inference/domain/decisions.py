"""Levels 0 and 1, and where a turn goes next. Pure functions; no I/O.

Level 1 answers only when it is sure: an FAQ whose question is close enough to the lead's (its
own answer, cited), a greeting or thanks (the tenant's templates), spam (silence) or a request
for a person (a handoff) recognised above the confidence chosen on held-out data. Anything else
goes to the models when the tenant may use them, else to a person: the assistant never makes
an answer up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from taskpilot.contracts.inference import Citation, ReplySource, Tier
from taskpilot.contracts.knowledge import KnowledgeHit
from taskpilot.inference.domain.cache import asks_the_same
from taskpilot.inference.domain.intents import IntentGuess
from taskpilot.inference.domain.rules import level_zero
from taskpilot.tenancy import BusinessProfile

ModelTier = Literal["L2", "L3"]
PREMIUM_INTENTS = frozenset({"complex", "complaint"})
"""Negotiation, objections, complaints and multi-part questions go straight to level 3."""
NO_FAQ_INTENTS = frozenset({"human", "complaint", "complex"})
"""A close FAQ is not the answer when the lead wants a person, complains or negotiates."""


@dataclass(frozen=True)
class Thresholds:
    faq_similarity: float = 0.91
    """Cosine (e5-small, compressed: unrelated 0.76-0.82) between the lead's message and the
    FAQ's question; the FAQ must also ask the same (numbers, plan, action, negation)."""
    intents: Mapping[str, float] = field(default_factory=dict)
    """Minimum classifier confidence per automatically answered intent; absent = never."""

    def is_sure(self, guess: IntentGuess | None) -> bool:
        if guess is None:
            return False
        threshold = self.intents.get(guess.intent)
        return threshold is not None and guess.confidence >= threshold


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


def hand_off(
    profile: BusinessProfile, guess: IntentGuess | None, reason: str, tier: Tier = "fallback"
) -> Decision:
    """The tenant's holding message, and a person takes over."""
    return Decision(
        profile.render(profile.handoff_message),
        tier,
        "handoff",
        guess.intent if guess else None,
        guess.confidence if guess else None,
        handoff=True,
        handoff_reason=reason,
    )


def answer_locally(
    text: str,
    guess: IntentGuess | None,
    hits: list[KnowledgeHit],
    profile: BusinessProfile,
    limits: Thresholds,
) -> Decision | None:
    """Level 0 and level 1: a sure answer that costs nothing, or None (it needs a model)."""
    rule = level_zero(text)
    if rule is not None:
        return Decision(
            None,
            "L0",
            "silence",
            rule.intent,
            1.0,
            handoff=rule.intent == "opt_out",
            handoff_reason=rule.reason if rule.intent == "opt_out" else None,
        )
    faq = next((h for h in hits if h.kind == "faq" and h.answer), None)
    wants_more = guess is not None and guess.intent in NO_FAQ_INTENTS and limits.is_sure(guess)
    if (
        faq is not None
        and faq.score >= limits.faq_similarity
        and not wants_more
        and asks_the_same(text, faq.title)
    ):
        citation = Citation(id=faq.id, kind="faq", title=faq.title, score=faq.score)
        return Decision(faq.answer, "L1", "faq", "faq", faq.score, (citation,))
    if guess is None or not limits.is_sure(guess):
        return None
    if guess.intent in ("greeting", "thanks"):
        template = (
            profile.greeting_template if guess.intent == "greeting" else profile.thanks_template
        )
        return Decision(profile.render(template), "L1", "template", guess.intent, guess.confidence)
    if guess.intent == "spam":
        return Decision(None, "L1", "silence", "spam", guess.confidence)
    if guess.intent == "human":
        return hand_off(profile, guess, "the lead asked for a person", tier="L1")
    return None


def decide(
    text: str,
    guess: IntentGuess | None,
    hits: list[KnowledgeHit],
    profile: BusinessProfile,
    limits: Thresholds,
) -> Decision:
    """Levels 0-1 without any model (the embedded default): answer, or hand off."""
    local = answer_locally(text, guess, hits, profile, limits)
    if local is not None:
        return local
    return hand_off(profile, guess, "no grounded answer and no model configured")


@dataclass(frozen=True)
class Allowance:
    """What the tenant's budget and limits allow for this turn."""

    models: bool = True
    premium: bool = True
    reason: str | None = None


def first_tier(guess: IntentGuess | None, allowance: Allowance) -> ModelTier:
    wants_premium = guess is not None and guess.intent in PREMIUM_INTENTS
    return "L3" if wants_premium and allowance.premium else "L2"


def next_tier(tier: ModelTier, allowance: Allowance) -> ModelTier | None:
    """Where an answer that failed its checks goes: level 2 escalates to 3 when allowed."""
    return "L3" if tier == "L2" and allowance.premium else None
