"""Knowledge use cases: teach (FAQ create/edit/delete) and search.

Order of writes: the row and the version bump commit first, the vector index follows, the
KnowledgeUpdated event is published last (after commit).
"""

from __future__ import annotations

import asyncio

from taskpilot.contracts.knowledge import (
    KnowledgeSearchResult,
    KnowledgeUpdated,
    SearchKnowledge,
)
from taskpilot.embeddings import Embedder
from taskpilot.knowledge.adapters import KnowledgeRepository, VectorStore
from taskpilot.knowledge.domain import EmbeddingMismatchError, Faq, VectorPoint, point_id
from taskpilot.runtime.bus import Bus


class FaqNotFoundError(LookupError):
    pass


class KnowledgeService:
    def __init__(self, repo: KnowledgeRepository, store: VectorStore, embedder: Embedder, bus: Bus):
        self._repo = repo
        self._store = store
        self._embedder = embedder
        self._bus = bus

    async def _index_faq(self, faq: Faq) -> None:
        [vector] = await asyncio.to_thread(self._embedder.embed_queries, [faq.question])
        await self._store.upsert(
            [
                VectorPoint(
                    id=point_id(faq.tenant_id, "faq", faq.id),
                    item_id=faq.id,
                    tenant_id=faq.tenant_id,
                    kind="faq",
                    title=faq.question,
                    text=faq.question,
                    answer=faq.answer,
                    embedding_model=self._embedder.name,
                    vector=vector.tolist(),
                )
            ]
        )

    async def _announce(self, tenant_id: str, version: int, change: str, item_id: str) -> None:
        await self._bus.publish(
            KnowledgeUpdated(
                tenant_id=tenant_id,
                correlation_id=f"knowledge:{tenant_id}:{version}",
                version=version,
                change=change,
                item_id=item_id,
            ),
            msg_id=f"knowledge:{tenant_id}:{version}",
        )

    async def add_faq(self, tenant_id: str, question: str, answer: str) -> Faq:
        faq, version = await self._repo.add_faq(tenant_id, question, answer)
        await self._index_faq(faq)
        await self._announce(tenant_id, version, "faq_created", faq.id)
        return faq

    async def update_faq(self, tenant_id: str, faq_id: str, question: str, answer: str) -> Faq:
        version = await self._repo.update_faq(tenant_id, faq_id, question, answer)
        if version is None:
            raise FaqNotFoundError(faq_id)
        faq = Faq(id=faq_id, tenant_id=tenant_id, question=question, answer=answer)
        await self._index_faq(faq)
        await self._announce(tenant_id, version, "faq_updated", faq_id)
        return faq

    async def delete_faq(self, tenant_id: str, faq_id: str) -> None:
        version = await self._repo.delete_faq(tenant_id, faq_id)
        if version is None:
            raise FaqNotFoundError(faq_id)
        await self._store.delete(tenant_id, [point_id(tenant_id, "faq", faq_id)])
        await self._announce(tenant_id, version, "faq_deleted", faq_id)

    async def list_faqs(self, tenant_id: str) -> list[Faq]:
        return await self._repo.list_faqs(tenant_id)

    async def search(self, request: SearchKnowledge) -> KnowledgeSearchResult:
        if request.vector is not None:
            if request.embedding_model != self._embedder.name:
                raise EmbeddingMismatchError(
                    f"query embedded with {request.embedding_model}, "
                    f"index uses {self._embedder.name}"
                )
            vector = request.vector
        else:
            [array] = await asyncio.to_thread(self._embedder.embed_queries, [request.query])
            vector = array.tolist()
        hits = await self._store.search(
            request.tenant_id, vector, request.top_k, list(request.kinds)
        )
        return KnowledgeSearchResult(
            hits=hits,
            knowledge_version=await self._repo.version(request.tenant_id),
            embedding_model=self._embedder.name,
        )
