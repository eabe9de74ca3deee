"""Inference evaluation on the labelled set in ``bench/data/inference/``.

    .venv/bin/python bench/inference_eval.py            # every figure, ~1-2 min
    .venv/bin/python bench/inference_eval.py --sweep    # plus cache/FAQ threshold sweeps

Runs the real InferenceService (levels 0-1, semantic cache, LiteLLM cascade) over 306 lead
messages of three businesses, with its models on the OpenAI-compatible stand-in answering as a
grounded model would (see ``inference_rig.py``), and the cache over 206 paraphrase/near-miss
pairs. Prints and writes ``bench/results/inference_eval.json``:

- intent accuracy of the level-1 classifier (held out: no message is in its training set)
- level-1 automatic answer precision (templates, FAQ answers, silence, handoffs; target 99 %)
- share of messages per tier, cost against an all-premium baseline with the same prices
  (every message sent to level 3 with the same prompt; LiteLLM's prices; target >= 70 % lower)
- cache hit rate on paraphrases and false-hit rate on near misses (target <= 1 %)
- cache lookup p95 including the embedding (target <= 15 ms), cascade overhead on a miss p95:
  the service's wall time minus the time inside the model port (target <= 30 ms)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench.inference_rig import Directory, KnowledgeIndex, MemoryBus, Oracle, load
from taskpilot.contracts.inference import GenerateReply
from taskpilot.embeddings import default_embedder
from taskpilot.inference.adapters.cache_store import MemoryCacheStore
from taskpilot.inference.adapters.llm import ChatRequest, ChatResult, LiteLLMChatModel
from taskpilot.inference.adapters.spend import MemorySpendLedger
from taskpilot.inference.cascade import Cascade
from taskpilot.inference.domain import cache, prompts
from taskpilot.inference.domain.decisions import Thresholds
from taskpilot.inference.domain.rules import normalise
from taskpilot.inference.service import CacheSettings, InferenceService
from taskpilot.inference.settings import InferenceSettings, ModelDeployment, ModelsConfig
from taskpilot.inference.spending import Spending
from taskpilot.inference.train import load_model
from taskpilot.tenancy.buckets import Buckets
from tests.integration.inference.standin import OpenAIStandIn, running

RESULTS = Path(__file__).resolve().parent / "results" / "inference_eval.json"
CHEAP, PREMIUM = "gpt-4o-mini", "gpt-4o"


class TimedModel:
    """The model port, timed: what the provider (LiteLLM + HTTP + stand-in) takes."""

    def __init__(self, inner: LiteLLMChatModel):
        self.inner = inner
        self.spent: list[float] = []

    @property
    def tiers(self) -> frozenset[str]:
        return self.inner.tiers

    async def complete(self, request: ChatRequest) -> ChatResult:
        started = time.perf_counter()
        try:
            return await self.inner.complete(request)
        finally:
            self.spent.append(time.perf_counter() - started)

    async def close(self) -> None:
        await self.inner.close()


class TimedEmbedder:
    """The embedder, timed: the one model run on inference's own CPU per message."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.spent: list[float] = []

    def embed_queries(self, texts: Sequence[str]) -> Any:
        started = time.perf_counter()
        try:
            return self.inner.embed_queries(texts)
        finally:
            self.spent.append(time.perf_counter() - started)

    def embed_passages(self, texts: Sequence[str]) -> Any:
        return self.inner.embed_passages(texts)


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def l1_correct(row: dict[str, Any], reply: Any) -> bool:
    text = (reply.text or "").casefold()
    if reply.source == "template":
        return row["intent"] == reply.intent
    if reply.source == "faq":
        if row["expect"] == "handoff" or not row["facts"]:
            return False
        hits = [f.casefold() in text for f in row["facts"]]
        return all(hits) if row["expect"] == "answer" else any(hits)
    if reply.source == "silence":
        return row["intent"] in ("spam", "empty", "opt_out")
    if reply.source == "handoff":
        return row["intent"] in ("human", "opt_out")
    return False


async def run(args: argparse.Namespace) -> dict[str, Any]:
    businesses, messages, pairs = load()
    embedder = default_embedder()
    intents = load_model(embedder)
    settings = InferenceSettings()
    limits = Thresholds(settings.faq_similarity, intents.thresholds)
    indexes = {t: KnowledgeIndex(embedder, b) for t, b in businesses.items()}
    bus = MemoryBus(indexes)
    rows = {m["text"]: m for m in messages}
    standin = OpenAIStandIn()
    oracle = Oracle(rows)
    standin.defaults.update({CHEAP: oracle, PREMIUM: oracle})
    report: dict[str, Any] = {"messages": len(messages), "pairs": len(pairs)}
    with running(standin):
        config = ModelsConfig(
            deployments=[
                ModelDeployment(tier="L2", model=f"openai/{CHEAP}", api_base=standin.base_url),
                ModelDeployment(tier="L3", model=f"openai/{PREMIUM}", api_base=standin.base_url),
            ],
            num_retries=0,
        )
        model = TimedModel(LiteLLMChatModel(config, environ={}))
        store = MemoryCacheStore()
        timed_embedder = TimedEmbedder(embedder)
        service = InferenceService(
            bus,  # type: ignore[arg-type]
            Directory(businesses),  # type: ignore[arg-type]
            timed_embedder,
            intents,
            limits,
            2.0,
            cache_settings=CacheSettings(store, settings.cache_similarity, settings.cache_ttl_s),
            spending=Spending(MemorySpendLedger(), requests=Buckets(1e6), tokens=Buckets(1e9)),
            cascade=Cascade(model),
        )
        await warm_up(service, model)
        report |= await stream(
            service, model, timed_embedder, messages, businesses, indexes, embedder
        )
        report |= await returning(service, pairs)
    report |= intent_accuracy(messages, embedder, intents)
    report |= await cache_pairs(pairs, indexes, embedder, intents, settings.cache_similarity)
    if args.sweep:
        report["sweep"] = await sweep(pairs, indexes, embedder, intents)
    return report


async def warm_up(service: InferenceService, model: TimedModel) -> None:
    await service.answer(command("aurora", "Is there anything special this week?"))
    model.spent.clear()


def command(tenant: str, text: str) -> GenerateReply:
    return GenerateReply(
        tenant_id=tenant,
        correlation_id=f"wamid.{uuid.uuid4().hex}",
        conversation_id=str(uuid.uuid4()),
        turn_id=uuid.uuid4().hex[:8],
        lead="34600000001",
        text=text,
    )


async def stream(
    service: InferenceService,
    model: TimedModel,
    timed_embedder: TimedEmbedder,
    messages: list[dict[str, Any]],
    businesses: dict[str, Any],
    indexes: dict[str, KnowledgeIndex],
    embedder: Any,
) -> dict[str, Any]:
    tiers: Counter[str] = Counter()
    cost = baseline = 0.0
    l1_total = l1_right = 0
    overhead: list[float] = []
    overhead_without_embedding: list[float] = []
    wrong_l1: list[str] = []
    for row in messages:
        before, embeds_before = len(model.spent), len(timed_embedder.spent)
        started = time.perf_counter()
        outcome, hit = await service.answer(command(row["tenant"], row["text"]))
        wall = time.perf_counter() - started
        decision = outcome.decision
        inside = sum(model.spent[before:])
        if len(model.spent) > before and not hit:
            overhead.append((wall - inside) * 1000)
            embedding = sum(timed_embedder.spent[embeds_before:])
            overhead_without_embedding.append((wall - inside - embedding) * 1000)
        label = "cache" if hit else decision.tier
        tiers[label] += 1
        cost += outcome.cost_usd
        baseline += premium_cost(row, businesses, indexes, embedder)
        if decision.tier in ("L0", "L1"):
            l1_total += 1
            right = l1_correct(row, decision)
            l1_right += right
            if not right:
                wrong_l1.append(f"{row['text']!r} ({row['intent']}) -> {decision.source}")
    return {
        "tiers": {t: round(n / len(messages), 4) for t, n in sorted(tiers.items())},
        "tier_counts": dict(tiers),
        "level1_answers": l1_total,
        "level1_precision": round(l1_right / max(l1_total, 1), 4),
        "level1_wrong": wrong_l1,
        "cost_usd": round(cost, 6),
        "all_premium_cost_usd": round(baseline, 6),
        "cost_reduction": round(1 - cost / baseline, 4) if baseline else None,
        "miss_overhead_ms_p50": round(p(overhead, 50), 2),
        "miss_overhead_ms_p95": round(p(overhead, 95), 2),
        "miss_overhead_without_embedding_ms_p95": round(p(overhead_without_embedding, 95), 2),
        "model_call_ms_p50": round(p([s * 1000 for s in model.spent], 50), 2),
        "model_calls": len(model.spent),
    }


async def returning(service: InferenceService, pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The pairs through the whole service: one lead asks the first question, another the
    second; is the second served from the first one's cached answer, and rightly so?"""
    served = wrong = cacheable = 0
    for pair in pairs:
        first, _ = await service.answer(command(pair["tenant"], pair["a"]))
        second, hit = await service.answer(command(pair["tenant"], pair["b"]))
        if not pair["same"] or first.decision.tier not in ("L2", "L3"):
            wrong += hit and second.decision.text == first.decision.text and not pair["same"]
            continue
        cacheable += 1
        served += hit and second.decision.text == first.decision.text
    different = sum(not p["same"] for p in pairs)
    return {
        "service_cache_hit_rate": round(served / max(cacheable, 1), 4),
        "service_cache_false_hit_rate": round(wrong / different, 4),
    }


def premium_cost(
    row: dict[str, Any],
    businesses: dict[str, Any],
    indexes: dict[str, KnowledgeIndex],
    embedder: Any,
) -> float:
    """What the same message costs when every message goes to the premium model."""
    import litellm

    from taskpilot.tenancy import BusinessProfile

    [vector] = embedder.embed_queries([normalise(row["text"]) or row["text"]])
    hits = indexes[row["tenant"]].search(vector.tolist(), 4)
    profile = BusinessProfile.model_validate(businesses[row["tenant"]]["profile"])
    messages = prompts.assemble(profile, prompts.data_blocks(hits), [], row["text"], "0" * 12)
    prompt_tokens = len(json.dumps(messages, ensure_ascii=False)) // 4
    cost_in, cost_out = litellm.cost_per_token(
        model=PREMIUM, prompt_tokens=prompt_tokens, completion_tokens=40
    )
    return float(cost_in + cost_out)


def intent_accuracy(messages: list[dict[str, Any]], embedder: Any, intents: Any) -> dict[str, Any]:
    labelled = [m for m in messages if m["intent"] in intents.labels]
    vectors = embedder.embed_queries([normalise(m["text"]) for m in labelled])
    right = [intents.guess(v).intent == m["intent"] for v, m in zip(vectors, labelled, strict=True)]
    by_lang: dict[str, list[bool]] = {}
    for ok, m in zip(right, labelled, strict=True):
        by_lang.setdefault(m["lang"], []).append(ok)
    return {
        "intent_accuracy": round(sum(right) / len(right), 4),
        "intent_accuracy_by_language": {k: round(sum(v) / len(v), 3) for k, v in by_lang.items()},
    }


def pair_signature(
    text: str, tenant: str, vector: Any, indexes: dict[str, KnowledgeIndex], intents: Any
) -> cache.Signature:
    hits = indexes[tenant].search(vector.tolist(), 4)
    knowledge = " ".join(f"{h.title} {h.text} {h.answer or ''}" for h in hits)
    return cache.signature(text, intents.guess(vector).intent, knowledge)


async def cache_pairs(
    pairs: list[dict[str, Any]],
    indexes: dict[str, KnowledgeIndex],
    embedder: Any,
    intents: Any,
    threshold: float,
) -> dict[str, Any]:
    store = MemoryCacheStore()
    scopes = {t: cache.CacheScope(t, 1, prompts.PROMPT_VERSION, "any") for t in indexes}
    a_vectors = embedder.embed_queries([normalise(x["a"]) for x in pairs])
    for pair, vector in zip(pairs, a_vectors, strict=True):
        sig = pair_signature(pair["a"], pair["tenant"], vector, indexes, intents)
        scope = scopes[pair["tenant"]]
        question = normalise(pair["a"])
        await store.put(
            cache.CachedAnswer(
                cache.entry_id(scope, question),
                scope,
                question,
                tuple(float(x) for x in vector),
                sig,
                pair["a"],
                "L2",
                "m",
                (),
                0.0,
                1e12,
            )
        )
    hits = false_hits = 0
    lookups: list[float] = []
    embeddings: list[float] = []
    rest: list[float] = []
    false_examples: list[str] = []
    for pair in pairs:
        # The knowledge search is the service's anyway (its hits give the vocabulary); the
        # lookup is the embedding, the classifier, the signature and the index.
        [vector] = embedder.embed_queries([normalise(pair["b"])])
        hits_b = indexes[pair["tenant"]].search(vector.tolist(), 4)
        knowledge = " ".join(f"{h.title} {h.text} {h.answer or ''}" for h in hits_b)
        started = time.perf_counter()
        [vector] = embedder.embed_queries([normalise(pair["b"])])
        embedded = time.perf_counter()
        sig = cache.signature(pair["b"], intents.guess(vector).intent, knowledge)
        found = await store.lookup(scopes[pair["tenant"]], vector, sig, threshold, 1.0)
        done = time.perf_counter()
        lookups.append((done - started) * 1000)
        embeddings.append((embedded - started) * 1000)
        rest.append((done - embedded) * 1000)
        # Every pair's first question is in the store: the lookup is scored on whether it
        # served *this* pair's stored question (another entry may rightly match too).
        own = found is not None and found[0].text == pair["a"]
        if pair["same"]:
            hits += own
        elif own:
            false_hits += 1
            false_examples.append(f"{pair['a']!r} served {pair['b']!r} ({pair['kind']})")
    same = sum(x["same"] for x in pairs)
    different = len(pairs) - same
    return {
        "cache_hit_rate": round(hits / same, 4),
        "cache_false_hit_rate": round(false_hits / different, 4),
        "cache_false_hits": false_examples,
        "cache_entries": len(store),
        "cache_lookup_ms_p50": round(p(lookups, 50), 2),
        "cache_lookup_ms_p95": round(p(lookups, 95), 2),
        "cache_lookup_embedding_ms_p50": round(p(embeddings, 50), 2),
        "cache_lookup_embedding_ms_p95": round(p(embeddings, 95), 2),
        "cache_lookup_without_embedding_ms_p95": round(p(rest, 95), 3),
    }


async def sweep(
    pairs: list[dict[str, Any]], indexes: dict[str, KnowledgeIndex], embedder: Any, intents: Any
) -> dict[str, Any]:
    out = {}
    for threshold in (0.88, 0.90, 0.91, 0.92, 0.93, 0.94, 0.95):
        result = await cache_pairs(pairs, indexes, embedder, intents, threshold)
        out[str(threshold)] = (result["cache_hit_rate"], result["cache_false_hit_rate"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", action="store_true", help="cache threshold sweep")
    args = parser.parse_args()
    started = time.time()
    report = asyncio.run(run(args))
    report["seconds"] = round(time.time() - started, 1)
    report["load_average"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(
        json.dumps(
            {k: v for k, v in report.items() if not isinstance(v, list)},
            indent=2,
            ensure_ascii=False,
        )
    )
    for key in ("level1_wrong", "cache_false_hits"):
        for line in report.get(key, [])[:20]:
            print(f"{key}: {line}")


if __name__ == "__main__":
    main()
