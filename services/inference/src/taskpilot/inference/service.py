"""Inference use case: answer one turn at the lowest level that is sure of its answer.

    level 0 rules -> level 1 (classifier, FAQ, templates) -> semantic cache -> level 2 -> level 3
                                                                       -> holding reply + handoff

One embedding of the normalised message serves the classifier, the knowledge search and the
cache. Every reply carries its tier, model, tokens, cost, cache hit, latency and sources.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from prometheus_client import Counter, Histogram

from taskpilot.contracts.inference import (
    Citation,
    GenerateReply,
    ReplyGenerated,
    ReplyWhatIf,
    WhatIfAnswer,
)
from taskpilot.contracts.knowledge import (
    KnowledgeHit,
    KnowledgeSearchResult,
    KnowledgeUpdated,
    SearchKnowledge,
)
from taskpilot.embeddings import Embedder
from taskpilot.inference.adapters.cache_store import CacheStore
from taskpilot.inference.cascade import Cascade, Outcome, Turn
from taskpilot.inference.domain import cache, prompts, toolspec
from taskpilot.inference.domain.decisions import (
    Allowance,
    Decision,
    Thresholds,
    answer_locally,
    decide,
    first_tier,
    hand_off,
)
from taskpilot.inference.domain.intents import IntentGuess, IntentModel
from taskpilot.inference.domain.rules import normalise
from taskpilot.inference.flight import SingleFlight
from taskpilot.inference.spending import Spending
from taskpilot.runtime.batching import Coalescer
from taskpilot.runtime.bus import Bus, RequestError
from taskpilot.tenancy import BusinessProfile, TenantDirectory

log = logging.getLogger(__name__)

REPLIES = Counter(
    "taskpilot_inference_replies_total", "Replies by tier and source", ["tier", "source"]
)
CACHE = Counter("taskpilot_inference_cache_total", "Semantic cache lookups", ["outcome"])
LOOKUP = Histogram(
    "taskpilot_inference_cache_lookup_seconds",
    "Cache lookup (index only; the embedding is shared with level 1)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05),
)


@dataclass
class CacheSettings:
    store: CacheStore
    min_similarity: float = 0.93
    ttl_s: float = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Context:
    command: GenerateReply
    profile: BusinessProfile
    vector: np.ndarray
    guess: IntentGuess | None
    hits: list[KnowledgeHit]
    knowledge_version: int | None


class InferenceService:
    def __init__(
        self,
        bus: Bus,
        tenants: TenantDirectory,
        embedder: Embedder,
        intents: IntentModel,
        limits: Thresholds,
        knowledge_timeout_s: float,
        *,
        cache_settings: CacheSettings,
        spending: Spending,
        cascade: Cascade | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self._bus = bus
        self._tenants = tenants
        self._embedder = embedder
        self._intents = intents
        self._limits = limits
        self._timeout = knowledge_timeout_s
        self._cache = cache_settings
        self._spending = spending
        self._cascade = cascade
        self._clock = clock
        self._flights: SingleFlight[cache.CachedAnswer | None] = SingleFlight()
        # Concurrent turns' questions embedded together (one engine call per batch).
        self._questions: Coalescer[str, np.ndarray] = Coalescer(
            self._embed_questions, max_batch=16, name="inference-embed"
        )

    async def generate(self, command: GenerateReply) -> None:
        started = time.perf_counter()
        outcome, cache_hit = await self.answer(command)
        await self._publish(command, outcome, cache_hit, started)

    async def answer(
        self, command: GenerateReply, *, dry_run: bool = False
    ) -> tuple[Outcome, bool]:
        """The turn's outcome and whether it came from the cache (no publishing).

        ``dry_run`` (a what-if replay of a past turn): the semantic cache is read but never
        written, so an answer nobody received cannot be served to a real lead later."""
        ctx = await self._context(command)
        local = answer_locally(command.text, ctx.guess, ctx.hits, ctx.profile, self._limits)
        if local is not None:
            return Outcome(local), False
        if self._cascade is None:
            return Outcome(decide(command.text, ctx.guess, [], ctx.profile, self._limits)), False
        allowance = await self._spending.allowance(command.tenant_id)
        if not allowance.models:
            reason = allowance.reason or "models are not allowed"
            return Outcome(hand_off(ctx.profile, ctx.guess, reason)), False
        scope = self._scope(ctx)
        if scope is None or command.round > 0 or command.tool_results:
            return await self._generate(ctx, allowance, scope), False
        signature = cache.signature(
            command.text, ctx.guess.intent if ctx.guess else None, _knowledge_text(ctx.hits)
        )
        hit = await self._lookup(scope, ctx.vector, signature)
        if hit is not None:
            return _from_cache(hit, ctx.guess), True
        if dry_run:
            return await self._generate(ctx, allowance, scope), False
        key = f"{scope.key()}\n{normalise(command.text)}"
        produced: list[Outcome] = []

        async def lead() -> cache.CachedAnswer | None:
            outcome = await self._generate(ctx, allowance, scope)
            produced.append(outcome)
            return await self._store(ctx, scope, signature, outcome)

        shared, leader = await self._flights.run(key, lead)
        if leader:
            return produced[0], False
        if shared is not None:
            CACHE.labels(outcome="shared_in_flight").inc()
            return _from_cache(shared, ctx.guess), True
        return await self._generate(ctx, allowance, scope), False

    async def what_if(self, request: ReplyWhatIf) -> WhatIfAnswer:
        """How this turn would be answered today: nothing published, no tool run."""
        outcome, cache_hit = await self.answer(request, dry_run=True)
        decision = outcome.decision
        return WhatIfAnswer(
            text=decision.text,
            tier=decision.tier,
            source=decision.source,
            intent=decision.intent,
            model=outcome.model,
            cost_usd=outcome.cost_usd,
            cache_hit=cache_hit,
            handoff=decision.handoff,
            tool_calls=outcome.tool_calls,
        )

    async def knowledge_updated(self, event: KnowledgeUpdated) -> None:
        dropped = await self._cache.store.drop_before(event.tenant_id, event.version)
        if dropped:
            log.info(
                "dropped %d cached answers of %s before v%d",
                dropped,
                event.tenant_id,
                event.version,
            )

    # -- steps ------------------------------------------------------------------------------

    async def _context(self, command: GenerateReply) -> Context:
        profile = (await self._tenants.get(command.tenant_id)).profile
        question = normalise(command.text) or command.text
        vector = await self._questions.submit(question)
        result = await self._search(command, vector.tolist())
        guess = self._intents.guess(vector) if question.strip() else None
        hits = list(result.hits) if result else []
        version = result.knowledge_version if result and not result.error else None
        return Context(command, profile, vector, guess, hits, version)

    async def _embed_questions(self, questions: list[str]) -> list[np.ndarray]:
        return list(await asyncio.to_thread(self._embedder.embed_queries, questions))

    def _scope(self, ctx: Context) -> cache.CacheScope | None:
        if ctx.knowledge_version is None:
            return None  # without the version a stale answer could be served
        default = (ctx.profile.languages or ["en"])[0]
        return cache.CacheScope(
            ctx.command.tenant_id,
            ctx.knowledge_version,
            prompts.PROMPT_VERSION,
            cache.detect_language(ctx.command.text, default),
        )

    async def _lookup(
        self, scope: cache.CacheScope, vector: np.ndarray, signature: cache.Signature
    ) -> cache.CachedAnswer | None:
        with LOOKUP.time():
            found = await self._cache.store.lookup(
                scope, vector, signature, self._cache.min_similarity, self._clock()
            )
        CACHE.labels(outcome="hit" if found else "miss").inc()
        return found[0] if found else None

    async def _generate(
        self, ctx: Context, allowance: Allowance, scope: cache.CacheScope | None
    ) -> Outcome:
        assert self._cascade is not None
        command = ctx.command
        blocks = prompts.data_blocks(ctx.hits)
        messages = prompts.assemble(
            ctx.profile,
            blocks,
            command.history,
            command.text,
            secrets.token_hex(6),
            tool_results=command.tool_results,
            now=_local_now(ctx.profile.timezone),
        )
        turn = Turn(
            command.tenant_id,
            ctx.profile,
            ctx.guess,
            messages,
            toolspec.offered(ctx.profile.enabled_tools),
            blocks,
            command.text,
            command.tool_results,
        )
        if not await self._spending.admit(command.tenant_id, messages):
            return Outcome(hand_off(ctx.profile, ctx.guess, "tenant's model rate limit"))
        outcome = await self._cascade.answer(turn, first_tier(ctx.guess, allowance), allowance)
        await self._spending.record(command, outcome, self._bus.publish)
        return outcome

    async def _store(
        self,
        ctx: Context,
        scope: cache.CacheScope,
        signature: cache.Signature,
        outcome: Outcome,
    ) -> cache.CachedAnswer | None:
        decision = outcome.decision
        refusal = cache.refusal_to_store(
            round=ctx.command.round,
            tool_calls=len(outcome.tool_calls),
            intent=signature.intent,
            question=ctx.command.text,
            reply=None if decision.handoff else decision.text,
            uses_personal_data=outcome.personal,
        )
        if refusal is not None or decision.tier not in ("L2", "L3") or decision.text is None:
            return None
        now = self._clock()
        question = normalise(ctx.command.text)
        entry = cache.CachedAnswer(
            id=cache.entry_id(scope, question),
            scope=scope,
            question=question,
            vector=tuple(float(x) for x in ctx.vector),
            signature=signature,
            text=decision.text,
            tier=decision.tier,
            model=outcome.model,
            citations=tuple(c.model_dump() for c in decision.citations),
            created_at=now,
            expires_at=now + self._cache.ttl_s,
        )
        await self._cache.store.put(entry)
        return entry

    async def _search(
        self, command: GenerateReply, vector: list[float]
    ) -> KnowledgeSearchResult | None:
        request: SearchKnowledge = command.caused(
            SearchKnowledge,
            query=command.text,
            vector=vector,
            embedding_model=self._embedder.name,
            top_k=4,
        )
        try:
            result = await self._bus.request(request, KnowledgeSearchResult, timeout=self._timeout)
        except RequestError as exc:
            log.warning("knowledge search failed, answering without it: %s", exc)
            return None
        if result.error:
            log.warning("knowledge search refused: %s", result.error)
        return result

    async def _publish(
        self, command: GenerateReply, outcome: Outcome, cache_hit: bool, started: float
    ) -> None:
        decision = outcome.decision
        log.info(
            "turn %s answered by %s/%s%s",
            command.turn_id,
            decision.tier,
            decision.source,
            " (cache)" if cache_hit else "",
        )
        REPLIES.labels(tier=decision.tier, source=decision.source).inc()
        await self._bus.publish(
            command.caused(
                ReplyGenerated,
                conversation_id=command.conversation_id,
                turn_id=command.turn_id,
                text=decision.text,
                tier=decision.tier,
                source=decision.source,
                intent=decision.intent,
                confidence=decision.confidence,
                model=outcome.model,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                cost_usd=outcome.cost_usd,
                cache_hit=cache_hit,
                citations=list(decision.citations),
                latency_ms=(time.perf_counter() - started) * 1000,
                handoff=decision.handoff,
                handoff_reason=decision.handoff_reason,
                round=command.round,
                tool_calls=outcome.tool_calls,
            ),
            msg_id=f"reply:{command.event_id}",
        )


def _from_cache(entry: cache.CachedAnswer, guess: IntentGuess | None) -> Outcome:
    decision = Decision(
        entry.text,
        "L3" if entry.tier == "L3" else "L2",
        "knowledge" if entry.citations else "model",
        guess.intent if guess else None,
        guess.confidence if guess else None,
        tuple(Citation.model_validate(c) for c in entry.citations),
    )
    return Outcome(decision, model=entry.model)


def _knowledge_text(hits: list[KnowledgeHit]) -> str:
    return " ".join(f"{h.title} {h.text} {h.answer or ''}" for h in hits)


def _local_now(timezone: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.now(zone).strftime("%A %Y-%m-%d %H:%M %Z")
