"""Inference's pure decisions: rules, the intent classifier, the cascade, the cache's rules,
prompts, tool schemas, answer checks and budgets. No I/O, no client libraries."""

from taskpilot.inference.domain.decisions import (
    Allowance,
    Decision,
    Thresholds,
    answer_locally,
    decide,
    first_tier,
    hand_off,
    next_tier,
)
from taskpilot.inference.domain.intents import IntentGuess, IntentModel
from taskpilot.inference.domain.rules import is_empty, level_zero, normalise

__all__ = [
    "Allowance",
    "Decision",
    "IntentGuess",
    "IntentModel",
    "Thresholds",
    "answer_locally",
    "decide",
    "first_tier",
    "hand_off",
    "is_empty",
    "level_zero",
    "next_tier",
    "normalise",
]
