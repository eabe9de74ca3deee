"""Every NATS subscription of knowledge, in one place: request-reply responders for search and
for lead memory (remember, recall, erase). Each checks that the tenant in the subject is the
tenant in the body, and answers errors in the reply instead of raising."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from faststream.nats import NatsMessage
from pydantic import BaseModel

from taskpilot.contracts import Message, subjects
from taskpilot.contracts.knowledge import (
    KNOWLEDGE_MEMORY_ERASE,
    KNOWLEDGE_MEMORY_RECALL,
    KNOWLEDGE_MEMORY_REMEMBER,
    EraseLeadMemory,
    KnowledgeSearchResult,
    MemoryResult,
    RecallMemory,
    RememberTurn,
    SearchKnowledge,
)
from taskpilot.knowledge.domain import EmbeddingMismatchError, MemoryTurn
from taskpilot.knowledge.service import KnowledgeService
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import raw_body, responder

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


def _search_error(message: str) -> BaseModel:
    return KnowledgeSearchResult(hits=[], knowledge_version=-1, embedding_model="", error=message)


def _memory_error(message: str) -> BaseModel:
    return MemoryResult(error=message)


def _responder(
    request_type: type[M],
    error: Callable[[str], BaseModel],
    answer: Callable[[M], Awaitable[BaseModel]],
) -> Callable[[bytes, NatsMessage], Awaitable[bytes]]:
    return responder(
        request_type, error, answer, service="knowledge", refusals={EmbeddingMismatchError: str}
    )


def register(bus: Bus, service: KnowledgeService, search_workers: int = 8) -> None:
    async def when_search_requested(request: SearchKnowledge) -> BaseModel:
        return await service.search(request)

    async def when_remember_requested(request: RememberTurn) -> BaseModel:
        turn = MemoryTurn(
            tenant_id=request.tenant_id,
            lead_id=request.lead,
            turn_id=request.turn_id,
            lead_text=request.lead_text,
            reply_text=request.reply_text,
        )
        await service.remember(turn)
        return MemoryResult(stored=1)

    async def when_recall_requested(request: RecallMemory) -> BaseModel:
        hits = await service.recall(
            request.tenant_id, request.lead, request.query, request.top_k, request.min_score
        )
        return MemoryResult(hits=hits)

    async def when_erase_requested(request: EraseLeadMemory) -> BaseModel:
        erased = await service.erase_lead(request.tenant_id, request.lead, request.before)
        return MemoryResult(erased=erased)

    # Reads are answered concurrently (a turn waits on its search), and so are the turns to
    # remember (stored in batches); an erasure runs one at a time.
    routes = [
        (
            subjects.KNOWLEDGE_SEARCH,
            "knowledge-search",
            _responder(SearchKnowledge, _search_error, when_search_requested),
            search_workers,
        ),
        (
            KNOWLEDGE_MEMORY_REMEMBER,
            "knowledge-memory-remember",
            _responder(RememberTurn, _memory_error, when_remember_requested),
            search_workers,  # taken together: the service stores them in batches
        ),
        (
            KNOWLEDGE_MEMORY_RECALL,
            "knowledge-memory-recall",
            _responder(RecallMemory, _memory_error, when_recall_requested),
            search_workers,
        ),
        (
            KNOWLEDGE_MEMORY_ERASE,
            "knowledge-memory-erase",
            _responder(EraseLeadMemory, _memory_error, when_erase_requested),
            1,
        ),
    ]
    for channel, queue, respond, workers in routes:
        bus.broker.subscriber(
            channel.wildcard(), queue=queue, title=queue, decoder=raw_body, max_workers=workers
        )(respond)
