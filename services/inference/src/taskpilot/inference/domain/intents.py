"""Level 1's intent classifier: multinomial logistic regression on the message embedding.

The same e5 vector serves the classifier, the semantic cache and the knowledge search, so the
classifier costs one matrix product (11 x 384). It is trained from the labelled set shipped in
``data/intents.jsonl`` (``python -m taskpilot.inference.train``); the trained weights and the
thresholds chosen on held-out folds ship in ``data/intent_model.npz`` together with the hash of
the data and the embedder's name, so a stale model is noticed (and retrained at start-up).
Pure numpy, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

INTENTS = (
    "greeting",
    "thanks",
    "spam",
    "faq",
    "pricing",
    "booking",
    "payment",
    "human",
    "complaint",
    "complex",
    "other",
)
AUTO_INTENTS = ("greeting", "thanks", "spam", "human")
"""Intents level 1 answers on its own when confident: templates, silence, a handoff."""


@dataclass(frozen=True)
class IntentGuess:
    intent: str
    confidence: float
    """The classifier's probability of ``intent``."""
    margin: float
    """Over the runner-up intent's probability."""


@dataclass
class IntentModel:
    labels: list[str]
    weights: Vectors  # (classes, dim)
    bias: Vectors  # (classes,)
    mean: Vectors  # (dim,) centring: e5's cosines are compressed around a common direction
    scale: float
    thresholds: dict[str, float] = field(default_factory=dict)
    """Minimum confidence per auto-answered intent (absent = never answered automatically)."""

    def probabilities(self, vectors: Vectors) -> Vectors:
        logits = ((np.atleast_2d(vectors) - self.mean) * self.scale) @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    def guess(self, vector: Vectors) -> IntentGuess:
        probs = self.probabilities(vector)[0]
        order = np.argsort(probs)[::-1]
        top, second = float(probs[order[0]]), float(probs[order[1]])
        return IntentGuess(self.labels[int(order[0])], top, top - second)

    def is_sure(self, guess: IntentGuess) -> bool:
        threshold = self.thresholds.get(guess.intent)
        return threshold is not None and guess.confidence >= threshold


def train(
    vectors: Vectors,
    labels: Sequence[str],
    *,
    l2: float = 1e-3,
    steps: int = 300,
    learning_rate: float = 4.0,
) -> IntentModel:
    """Softmax regression by full-batch gradient descent (deterministic: zero start)."""
    names = sorted(set(labels), key=lambda n: INTENTS.index(n) if n in INTENTS else 99)
    index = {n: i for i, n in enumerate(names)}
    y = np.array([index[label] for label in labels])
    mean = vectors.mean(axis=0)
    centred = vectors - mean
    scale = float(1.0 / (np.linalg.norm(centred, axis=1).mean() + 1e-9))
    x = centred * scale
    n, dim = x.shape
    onehot = np.eye(len(names), dtype=np.float64)[y]
    # Each class weighs the same whatever its number of examples.
    sample_weight = (n / (len(names) * np.bincount(y, minlength=len(names))))[y][:, None]
    w = np.zeros((len(names), dim))
    b = np.zeros(len(names))
    for _ in range(steps):
        logits = x @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        error = (p - onehot) * sample_weight / n
        w -= learning_rate * (error.T @ x + l2 * w)
        b -= learning_rate * error.sum(axis=0)
    return IntentModel(
        names,
        w.astype(np.float32),
        b.astype(np.float32),
        mean.astype(np.float32),
        scale,
    )


def folds(labels: Sequence[str], k: int) -> list[npt.NDArray[np.int64]]:
    """Stratified, deterministic fold assignment: every k-th example of each intent."""
    assignment = np.zeros(len(labels), dtype=np.int64)
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        assignment[i] = seen.get(label, 0) % k
        seen[label] = seen.get(label, 0) + 1
    return [np.flatnonzero(assignment == f) for f in range(k)]


def out_of_fold(vectors: Vectors, labels: Sequence[str], k: int = 5) -> list[IntentGuess]:
    """Each example classified by a model that never saw it."""
    guesses: list[IntentGuess | None] = [None] * len(labels)
    for held in folds(labels, k):
        keep = np.setdiff1d(np.arange(len(labels)), held)
        model = train(vectors[keep], [labels[i] for i in keep])
        for i in held:
            guesses[i] = model.guess(vectors[i])
    return [g for g in guesses if g is not None]


def choose_thresholds(
    guesses: Sequence[IntentGuess],
    labels: Sequence[str],
    intents: Sequence[str] = AUTO_INTENTS,
    precision: float = 0.99,
    floor: float = 0.6,
) -> dict[str, float]:
    """Per intent, the lowest confidence above which held-out answers were ``precision``
    right (and never below ``floor``). A threshold that no held-out example clears is left
    out: that intent is then never answered automatically."""
    chosen: dict[str, float] = {}
    for intent in intents:
        scored = sorted(
            (
                (g.confidence, label == intent)
                for g, label in zip(guesses, labels, strict=True)
                if g.intent == intent
            ),
            reverse=True,
        )
        best: float | None = None
        right = 0
        for count, (confidence, correct) in enumerate(scored, start=1):
            right += correct
            if right / count >= precision and confidence >= floor:
                best = confidence
            elif right / count < precision:
                break
        if best is not None:
            chosen[intent] = round(best, 4)
    return chosen
