"""Train the level-1 intent classifier from ``data/intents.jsonl`` and ship it.

    .venv/bin/python -m taskpilot.inference.train      # writes data/intent_model.npz

Thresholds for automatic answers are chosen on out-of-fold predictions (5 folds: every example
is judged by a model that never saw it) for >= 99 % precision. The file records the data's hash
and the embedder's name; :func:`load_model` retrains at start-up when either changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from taskpilot.embeddings import Embedder
from taskpilot.inference.domain.intents import (
    IntentModel,
    choose_thresholds,
    out_of_fold,
    train,
)

log = logging.getLogger(__name__)
DATA = "data/intents.jsonl"
MODEL = "data/intent_model.npz"


def _data_text() -> str:
    return resources.files("taskpilot.inference").joinpath(DATA).read_text(encoding="utf-8")


def load_examples() -> list[dict[str, str]]:
    return [json.loads(line) for line in _data_text().splitlines() if line.strip()]


def fingerprint(embedder_name: str) -> str:
    return hashlib.sha256((embedder_name + "\n" + _data_text()).encode()).hexdigest()


def fit(embedder: Embedder) -> tuple[IntentModel, dict[str, Any]]:
    """Train on every example; thresholds from out-of-fold predictions."""
    examples = load_examples()
    labels = [e["intent"] for e in examples]
    vectors = embedder.embed_queries([e["text"] for e in examples])
    guesses = out_of_fold(vectors, labels)
    model = train(vectors, labels)
    model.thresholds = choose_thresholds(guesses, labels)
    accuracy = float(np.mean([g.intent == label for g, label in zip(guesses, labels, strict=True)]))
    return model, {"examples": len(labels), "out_of_fold_accuracy": round(accuracy, 4)}


def save(model: IntentModel, path: Path, embedder_name: str, report: dict[str, Any]) -> None:
    np.savez_compressed(
        path,
        labels=np.array(model.labels),
        weights=model.weights,
        bias=model.bias,
        mean=model.mean,
        scale=np.array(model.scale),
        meta=np.array(
            json.dumps(
                {
                    "thresholds": model.thresholds,
                    "fingerprint": fingerprint(embedder_name),
                    "embedder": embedder_name,
                    **report,
                }
            )
        ),
    )


def read(path: Path | None = None) -> tuple[IntentModel, dict[str, Any]] | None:
    source = path or resources.files("taskpilot.inference").joinpath(MODEL)
    try:
        with source.open("rb") as handle, np.load(handle) as npz:
            meta = json.loads(str(npz["meta"]))
            model = IntentModel(
                [str(x) for x in npz["labels"]],
                npz["weights"],
                npz["bias"],
                npz["mean"],
                float(npz["scale"]),
                {k: float(v) for k, v in meta["thresholds"].items()},
            )
    except FileNotFoundError:
        return None
    return model, meta


def load_model(embedder: Embedder) -> IntentModel:
    """The shipped model when it was trained on this data with this embedder, else a new one."""
    shipped = read()
    if shipped is not None and shipped[1].get("fingerprint") == fingerprint(embedder.name):
        return shipped[0]
    log.warning("shipped intent model is stale for %s: training at start-up", embedder.name)
    return fit(embedder)[0]


def main() -> None:
    from taskpilot.embeddings import default_embedder

    embedder = default_embedder()
    model, report = fit(embedder)
    target = Path(str(resources.files("taskpilot.inference").joinpath(MODEL)))
    save(model, target, embedder.name, report)
    json.dump({**report, "thresholds": model.thresholds}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
