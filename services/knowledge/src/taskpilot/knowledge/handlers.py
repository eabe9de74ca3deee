"""Every NATS subscription of knowledge, in one place: the search responder."""

from __future__ import annotations

import logging

from faststream.nats import NatsMessage
from pydantic import ValidationError

from taskpilot.contracts import subjects
from taskpilot.contracts.knowledge import KnowledgeSearchResult, SearchKnowledge
from taskpilot.knowledge.domain import EmbeddingMismatchError
from taskpilot.knowledge.service import KnowledgeService
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import raw_body
from taskpilot.tenancy import tenant_scope

log = logging.getLogger(__name__)


def _error(message: str) -> bytes:
    return (
        KnowledgeSearchResult(hits=[], knowledge_version=-1, embedding_model="", error=message)
        .model_dump_json()
        .encode()
    )


def register(bus: Bus, service: KnowledgeService) -> None:
    @bus.broker.subscriber(
        subjects.KNOWLEDGE_SEARCH.wildcard(),
        queue="knowledge-search",
        title="knowledge-search",
        decoder=raw_body,
    )
    async def when_search_requested(body: bytes, msg: NatsMessage) -> bytes:
        """Request-reply search; the tenant in the subject must be the tenant in the body."""
        try:
            request = SearchKnowledge.model_validate_json(msg.body)
        except ValidationError as exc:
            return _error(f"invalid request: {exc.error_count()} errors")
        subject_tenant = msg.raw_message.subject.split(".")[2]
        if subject_tenant != request.tenant_id:
            return _error("tenant in subject and body differ")
        with tenant_scope(request.tenant_id):
            try:
                result = await service.search(request)
            except EmbeddingMismatchError as exc:
                return _error(str(exc))
        return result.model_dump_json().encode()
