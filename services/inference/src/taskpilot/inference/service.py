"""Inference use case: answer one turn at the lowest level that is sure of its answer."""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Counter

from taskpilot.contracts.inference import GenerateReply, ReplyGenerated
from taskpilot.contracts.knowledge import KnowledgeHit, KnowledgeSearchResult, SearchKnowledge
from taskpilot.embeddings import Embedder
from taskpilot.inference.domain import IntentIndex, Thresholds, decide, load_examples
from taskpilot.runtime.bus import Bus, RequestError
from taskpilot.tenancy import TenantDirectory

log = logging.getLogger(__name__)

REPLIES = Counter(
    "taskpilot_inference_replies_total", "Replies by tier and source", ["tier", "source"]
)


def build_intent_index(embedder: Embedder) -> IntentIndex:
    examples = load_examples()
    vectors = embedder.embed_queries([e["text"] for e in examples])
    return IntentIndex(vectors, [e["intent"] for e in examples])


class InferenceService:
    def __init__(
        self,
        bus: Bus,
        tenants: TenantDirectory,
        embedder: Embedder,
        intents: IntentIndex,
        limits: Thresholds,
        knowledge_timeout_s: float,
    ):
        self._bus = bus
        self._tenants = tenants
        self._embedder = embedder
        self._intents = intents
        self._limits = limits
        self._timeout = knowledge_timeout_s

    async def generate(self, command: GenerateReply) -> None:
        started = time.perf_counter()
        profile = (await self._tenants.get(command.tenant_id)).profile
        [vector] = await asyncio.to_thread(self._embedder.embed_queries, [command.text])
        hits = await self._search(command, vector.tolist())
        decision = decide(command.text, self._intents.guess(vector), hits, profile, self._limits)
        log.info("turn %s answered by %s/%s", command.turn_id, decision.tier, decision.source)
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
                citations=list(decision.citations),
                latency_ms=(time.perf_counter() - started) * 1000,
                handoff=decision.handoff,
                handoff_reason=decision.handoff_reason,
            ),
            msg_id=f"reply:{command.event_id}",
        )

    async def _search(self, command: GenerateReply, vector: list[float]) -> list[KnowledgeHit]:
        request: SearchKnowledge = command.caused(
            SearchKnowledge,
            query=command.text,
            vector=vector,
            embedding_model=self._embedder.name,
            top_k=3,
        )
        try:
            result = await self._bus.request(request, KnowledgeSearchResult, timeout=self._timeout)
        except RequestError as exc:
            log.warning("knowledge search failed, answering without it: %s", exc)
            return []
        if result.error:
            log.warning("knowledge search refused: %s", result.error)
        return list(result.hits)
