"""Retrieval quality on the labelled set: recall@1, recall@3 and MRR.

    .venv/bin/python bench/knowledge_retrieval.py [--keyword-weight W] [--per-language]

Indexes bench/data/knowledge (two businesses: FAQs and PDF-free documents in Markdown, HTML and
text) through the service's own extraction, chunking, embedding and hybrid search, on the
embedded vector store (Qdrant Edge), then asks every labelled question as its tenant. A hit is
relevant when its text or answer contains the question's ``expect`` phrase. Prints the figures
for dense-only retrieval (raw cosine, then with FAQ scores calibrated) and for the hybrid
default. Target: recall@3 >= 0.9.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from taskpilot.contracts.knowledge import KnowledgeHit
from taskpilot.embeddings import default_embedder
from taskpilot.knowledge.adapters import EdgeVectorStore
from taskpilot.knowledge.chunking import chunk
from taskpilot.knowledge.documents import extract, media_type
from taskpilot.knowledge.domain import EmbeddingSpace, Faq, HybridPolicy, fuse
from taskpilot.knowledge.repository import StoredChunk
from taskpilot.knowledge.service import Retriever

DATA = Path(__file__).parent / "data" / "knowledge"


def load() -> dict[str, Any]:
    return json.loads((DATA / "retrieval.json").read_text())


async def index(retriever: Retriever, data: dict[str, Any]) -> int:
    points = []
    for tenant, spec in data["tenants"].items():
        faqs = [
            Faq(id=f"faq{i}", tenant_id=tenant, question=q, answer=a)
            for i, (q, a) in enumerate(spec["faqs"])
        ]
        points += retriever.faq_points(faqs)
        for doc in spec["documents"]:
            path = DATA / doc["path"]
            raw = path.read_bytes()
            chunks = chunk(extract(raw, media_type(path.name, "", raw)))
            stored = [StoredChunk(path.stem, doc["title"], doc["source"], c) for c in chunks]
            points += retriever.chunk_points(tenant, stored)
    await retriever.store.upsert(points)
    return len(points)


def relevant(hit: KnowledgeHit, expect: str) -> bool:
    return expect.lower() in f"{hit.text}\n{hit.answer or ''}".lower()


async def evaluate(
    retriever: Retriever, data: dict[str, Any], policy: HybridPolicy
) -> dict[str, dict[str, float]]:
    ranks: dict[str, list[int | None]] = defaultdict(list)
    for q in data["questions"]:
        candidates = await retriever.candidates(q["tenant"], q["q"], None, ("faq", "chunk"))
        hits = fuse(candidates, 10, policy, None)
        rank = next((i + 1 for i, h in enumerate(hits) if relevant(h, q["expect"])), None)
        ranks["all"].append(rank)
        ranks[q["lang"]].append(rank)
    return {group: figures(values) for group, values in ranks.items()}


def figures(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)
    return {
        "n": n,
        "recall@1": sum(1 for r in ranks if r == 1) / n,
        "recall@3": sum(1 for r in ranks if r is not None and r <= 3) / n,
        "mrr": sum(1 / r for r in ranks if r is not None) / n,
    }


def line(name: str, f: dict[str, float]) -> str:
    return (
        f"{name:<22} n={int(f['n']):>3}  recall@1={f['recall@1']:.3f}  "
        f"recall@3={f['recall@3']:.3f}  MRR={f['mrr']:.3f}"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keyword-weight", type=float, default=HybridPolicy().keyword_weight)
    parser.add_argument("--per-language", action="store_true")
    args = parser.parse_args()
    data = load()
    embedder = default_embedder()
    store = EdgeVectorStore(None, "bench", EmbeddingSpace(embedder.name, embedder.dim))
    await store.open()
    try:
        hybrid = HybridPolicy(keyword_weight=args.keyword_weight)
        retriever = Retriever(store, embedder, hybrid)
        started = time.perf_counter()
        points = await index(retriever, data)
        print(f"indexed {points} points in {time.perf_counter() - started:.1f}s ({embedder.name})")
        print(f"{len(data['questions'])} labelled questions, {len(data['tenants'])} tenants")
        results = {}
        variants = (
            ("dense, raw cosine", HybridPolicy(keyword_weight=0.0, faq_offset=0.0)),
            ("dense, FAQ-calibrated", HybridPolicy(keyword_weight=0.0)),
            ("hybrid", hybrid),
        )
        for name, policy in variants:
            results[name] = await evaluate(retriever, data, policy)
            print(line(name, results[name]["all"]))
        if args.per_language:
            for lang, f in sorted(results["hybrid"].items()):
                if lang != "all":
                    print(line(f"  hybrid [{lang}]", f))
        target = results["hybrid"]["all"]["recall@3"] >= 0.9
        print(f"target recall@3 >= 0.9: {'met' if target else 'NOT met'}")
        return 0 if target else 1
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
