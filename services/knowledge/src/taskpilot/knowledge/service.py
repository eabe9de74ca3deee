"""Knowledge use cases: teach (FAQs, documents), search, remember, forget, re-index.

Order of writes: rows and the version bump commit first, the vector index follows (or, for a
document, precedes the commit and is rolled back if the commit fails), and KnowledgeUpdated is
published last, after commit.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import PurePosixPath
from typing import Protocol

import numpy as np
import numpy.typing as npt

from taskpilot.contracts import Message
from taskpilot.contracts.knowledge import (
    KnowledgeSearchResult,
    KnowledgeUpdated,
    MemoryHit,
    SearchKnowledge,
)
from taskpilot.embeddings import Embedder
from taskpilot.knowledge.adapters import VectorStore
from taskpilot.knowledge.chunking import ChunkLimits, chunk
from taskpilot.knowledge.documents import extract, media_type
from taskpilot.knowledge.domain import (
    Candidate,
    Document,
    DocumentIn,
    DocumentTooLargeError,
    EmbeddingMismatchError,
    EmbeddingSpace,
    Faq,
    HybridPolicy,
    Job,
    Kind,
    MemoryTurn,
    StoreQuery,
    VectorPoint,
    chunk_item_id,
    document_keywords,
    fuse,
    memory_item_id,
    point_id,
    query_keywords,
)
from taskpilot.knowledge.indexing import EMBED_BATCH, Indexer
from taskpilot.knowledge.repository import KnowledgeRepository, StoredChunk
from taskpilot.runtime.batching import Coalescer

log = logging.getLogger(__name__)


class FaqNotFoundError(LookupError):
    pass


class DocumentNotFoundError(LookupError):
    pass


class JobNotFoundError(LookupError):
    pass


def _asked(turn: MemoryTurn) -> tuple[str, str]:
    return (turn.tenant_id, turn.lead_text)


class RecentVectors:
    """The last ``capacity`` vectors by key, oldest forgotten first."""

    def __init__(self, capacity: int):
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, str], npt.NDArray[np.float32]] = OrderedDict()

    def put(self, key: tuple[str, str], vector: Sequence[float]) -> None:
        self._items[key] = np.asarray(vector, dtype=np.float32)  # 1.5 KB at 384-d, not 12
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def get(self, key: tuple[str, str]) -> npt.NDArray[np.float32] | None:
        return self._items.get(key)

    def __len__(self) -> int:
        return len(self._items)


class Publisher(Protocol):
    async def publish(self, message: Message, *, msg_id: str | None = None) -> bool: ...


class Retriever:
    """Turns items into points and queries into ranked hits: embedder + keywords + store."""

    def __init__(self, store: VectorStore, embedder: Embedder, policy: HybridPolicy):
        self.store = store
        self.embedder = embedder
        self.policy = policy
        self.space = EmbeddingSpace(embedder.name, embedder.dim)

    def faq_points(self, faqs: Sequence[Faq]) -> list[VectorPoint]:
        # A lead's question is compared with the FAQ's question: both embedded as queries.
        vectors = self.embedder.embed_queries([f.question for f in faqs])
        return [
            self._point(f.tenant_id, "faq", f.id, f.question, f.question, vector, answer=f.answer)
            for f, vector in zip(faqs, vectors, strict=True)
        ]

    def embed_passages(self, texts: Sequence[str]) -> list[list[float]]:
        return [[float(x) for x in v] for v in self.embedder.embed_passages(texts)]

    def chunk_points(
        self,
        tenant_id: str,
        chunks: Sequence[StoredChunk],
        vectors: Sequence[Sequence[float]] | None = None,
    ) -> list[VectorPoint]:
        """The chunks' points, embedded now unless their ``vectors`` are given."""
        texts = [c.chunk.titled(c.title) for c in chunks]
        if vectors is None:
            vectors = self.embed_passages(texts)
        return [
            self._point(
                tenant_id,
                "chunk",
                chunk_item_id(c.document_id, c.chunk.position),
                " › ".join(p for p in (c.title, c.chunk.heading) if p),
                c.chunk.text,
                vector,
                document_id=c.document_id,
                position=c.chunk.position,
                source=c.source or None,
                keywords_of=text,
            )
            for c, text, vector in zip(chunks, texts, vectors, strict=True)
        ]

    def memory_points(
        self,
        turns: Sequence[MemoryTurn],
        known: Mapping[tuple[str, str], Sequence[float] | npt.NDArray[np.float32]] | None = None,
    ) -> list[VectorPoint]:
        """A remembered turn is found by what the lead said: the lead's words embedded as a
        query, like the recall query they are compared with (a question against a question,
        as FAQ matching does); the reply is found by its keywords. ``known`` holds vectors
        already computed for a lead's words (the question's own, from the search that
        answered it): only the others are embedded."""
        known = known or {}
        missing = list(dict.fromkeys(t.lead_text for t in turns if _asked(t) not in known))
        fresh = dict(zip(missing, self.embedder.embed_queries(missing), strict=True))
        vectors = [known[_asked(t)] if _asked(t) in known else fresh[t.lead_text] for t in turns]
        return [
            self._point(
                t.tenant_id,
                "memory",
                memory_item_id(t.lead_id, t.turn_id),
                t.turn_id,
                t.lead_text,
                vector,
                answer=t.reply_text,
                lead_id=t.lead_id,
            )
            for t, vector in zip(turns, vectors, strict=True)
        ]

    def _point(
        self,
        tenant_id: str,
        kind: Kind,
        item_id: str,
        title: str,
        text: str,
        vector: Sequence[float] | npt.NDArray[np.float32],
        *,
        answer: str | None = None,
        keywords_of: str | None = None,
        **extra: object,
    ) -> VectorPoint:
        return VectorPoint(
            id=point_id(tenant_id, kind, item_id),
            item_id=item_id,
            tenant_id=tenant_id,
            kind=kind,
            title=title,
            text=text,
            answer=answer,
            embedding_model=self.space.model,
            embedding_dim=self.space.dim,
            vector=[float(x) for x in vector],
            keywords=document_keywords(keywords_of or f"{text}\n{answer or ''}"),
            **extra,
        )

    async def candidates(
        self,
        tenant_id: str,
        text: str,
        vector: Sequence[float] | None,
        kinds: tuple[Kind, ...],
        lead_id: str | None = None,
    ) -> list[Candidate]:
        if vector is None:
            [array] = await asyncio.to_thread(self.embedder.embed_queries, [text])
            vector = array.tolist()
        query = StoreQuery(
            tenant_id=tenant_id,
            space=self.space,
            dense=vector,
            keywords=query_keywords(text),
            kinds=kinds,
            limit=self.policy.candidates,
            lead_id=lead_id,
        )
        return await self.store.search(query)


class KnowledgeService:
    def __init__(
        self,
        repo: KnowledgeRepository,
        retriever: Retriever,
        bus: Publisher,
        *,
        max_upload_bytes: int = 10 * 1024 * 1024,
        max_chunks: int = 5000,
        limits: ChunkLimits | None = None,
        job_lease_s: float = 30.0,
        job_sweep_s: float = 10.0,
        embed_batch: int = EMBED_BATCH,
        asked_capacity: int = 4096,
    ):
        self._repo = repo
        self._retriever = retriever
        self._store = retriever.store
        self._bus = bus
        self.max_upload_bytes = max_upload_bytes
        self._max_chunks = max_chunks
        self._limits = limits or ChunkLimits()
        self.indexing = Indexer(
            repo.jobs,
            retriever,
            self._announce,
            lease_s=job_lease_s,
            sweep_s=job_sweep_s,
            batch=embed_batch,
        )
        # The questions searched lately, by tenant and text, with the vector they came with:
        # the turn that question starts is remembered without embedding it again.
        self._asked = RecentVectors(asked_capacity)
        # Turns that arrive together are stored together: one embedding call, one upsert.
        self._remembering: Coalescer[MemoryTurn, None] = Coalescer(
            self._remember_all, max_batch=embed_batch, name="knowledge-remember"
        )

    @property
    def embedding_model(self) -> str:
        return self._retriever.space.model

    async def _announce(self, tenant_id: str, version: int, change: str, item_id: str) -> None:
        """Once the index holds ``version``'s content: searches are labelled with it from now
        on, and inference drops what it cached under older versions."""
        await self._repo.mark_indexed(tenant_id, version)
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

    # -- FAQs ----------------------------------------------------------------------------------
    async def _index_faq(self, faq: Faq) -> None:
        points = await asyncio.to_thread(self._retriever.faq_points, [faq])
        await self._store.upsert(points)

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

    # -- documents ---------------------------------------------------------------------------
    async def start_upload(self, tenant_id: str, upload: DocumentIn) -> Job:
        """Validate and chunk now (bad input is refused before anything is stored); embed and
        index in the background, reporting progress on the returned job."""
        if len(upload.data) > self.max_upload_bytes:
            raise DocumentTooLargeError(
                f"the file is {len(upload.data)} bytes; the limit is {self.max_upload_bytes}"
            )
        kind = media_type(upload.filename, upload.content_type, upload.data)
        blocks = await asyncio.to_thread(extract, upload.data, kind)
        chunks = chunk(blocks, self._limits)
        if len(chunks) > self._max_chunks:
            raise DocumentTooLargeError(
                f"the document makes {len(chunks)} chunks; the limit is {self._max_chunks}"
            )
        document = Document(
            id=uuid.uuid4().hex,
            tenant_id=tenant_id,
            title=upload.title.strip() or PurePosixPath(upload.filename).stem or "Untitled",
            source=upload.source.strip() or upload.filename,
            filename=upload.filename,
            media_type=kind,
            status="indexing",
            chunks=len(chunks),
        )
        job = Job(
            id=uuid.uuid4().hex,
            tenant_id=tenant_id,
            document_id=document.id,
            status="queued",
            total=len(chunks),
            attempts=1,
        )
        await self.indexing.start(document, job, chunks)
        return job

    async def wait_for_jobs(self) -> None:
        """Let running indexing jobs finish (tests, tools)."""
        await self.indexing.wait()

    async def job(self, tenant_id: str, job_id: str) -> Job:
        job = await self._repo.jobs.get(tenant_id, job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    async def document(self, tenant_id: str, document_id: str) -> Document:
        document = await self._repo.get_document(tenant_id, document_id)
        if document is None:
            raise DocumentNotFoundError(document_id)
        return document

    async def list_documents(self, tenant_id: str) -> list[Document]:
        return await self._repo.list_documents(tenant_id)

    async def delete_document(self, tenant_id: str, document_id: str) -> None:
        version = await self._repo.delete_document(tenant_id, document_id)
        if version is None:
            raise DocumentNotFoundError(document_id)
        await self._store.delete_matching(tenant_id, document_id=document_id)
        await self._announce(tenant_id, version, "document_deleted", document_id)

    # -- search ------------------------------------------------------------------------------
    async def search(self, request: SearchKnowledge) -> KnowledgeSearchResult:
        if request.vector is not None and request.embedding_model != self.embedding_model:
            raise EmbeddingMismatchError(
                f"query embedded with {request.embedding_model}, index uses {self.embedding_model}"
            )
        # The hits are labelled with the last version the index is known to hold, read before
        # the search: the content searched is that version's or newer, never older. A change's
        # version commits before its points reach the index (FAQs), so labelling with the
        # committed version, or reading it after the search, could put the new version on the
        # old content's hits; inference would cache an answer from them under a version that
        # the change's KnowledgeUpdated does not drop. A label older than the content only
        # makes that answer dropped sooner.
        version = await self._repo.indexed_version(request.tenant_id)
        candidates = await self._retriever.candidates(
            request.tenant_id, request.query, request.vector, tuple(request.kinds)
        )
        if request.vector is not None:  # the store took it: the right model and size
            self._asked.put((request.tenant_id, request.query), request.vector)
        return KnowledgeSearchResult(
            hits=fuse(candidates, request.top_k, self._retriever.policy, request.min_score),
            knowledge_version=version,
            embedding_model=self.embedding_model,
        )

    # -- lead memory ---------------------------------------------------------------------------
    async def remember(self, turn: MemoryTurn) -> None:
        await self._remembering.submit(turn)

    async def _remember_all(self, turns: list[MemoryTurn]) -> list[None]:
        for turn in turns:  # each in its own tenant's transaction
            await self._repo.save_memory(turn)
        known = {_asked(t): v for t in turns if (v := self._asked.get(_asked(t))) is not None}
        points = await asyncio.to_thread(self._retriever.memory_points, turns, known)
        await self._store.upsert(points)
        return [None] * len(turns)

    async def recall(
        self, tenant_id: str, lead_id: str, query: str, top_k: int, min_score: float | None
    ) -> list[MemoryHit]:
        candidates = await self._retriever.candidates(
            tenant_id, query, None, ("memory",), lead_id=lead_id
        )
        hits = fuse(candidates, top_k, self._retriever.policy, min_score)
        return [
            MemoryHit(
                turn_id=h.title,
                lead_text=h.text,
                reply_text=h.answer or "",
                score=h.score,
                rank_score=h.rank_score,
            )
            for h in hits
        ]

    async def erase_lead(self, tenant_id: str, lead_id: str, before: datetime | None = None) -> int:
        """Forget the lead (or, with ``before``, what was remembered before then): rows
        first (the source of any re-index), then the points."""
        if before is not None:
            turns = await self._repo.erase_memories_before(tenant_id, lead_id, before)
            ids = [point_id(tenant_id, "memory", memory_item_id(lead_id, t)) for t in turns]
            if ids:
                await self._store.delete(tenant_id, ids)
            return len(ids)
        erased = await self._repo.erase_memories(tenant_id, lead_id)
        await self._store.delete_matching(tenant_id, lead_id=lead_id)
        return erased

    # -- re-indexing ---------------------------------------------------------------------------
    async def reindex_stale_tenants(self) -> list[str]:
        """Rebuild every tenant whose points came from another embedding model."""
        tenants = await self._repo.tenants_indexed_with_another_model()
        for tenant_id in tenants:
            await self.reindex(tenant_id)
        return tenants

    async def reindex(self, tenant_id: str) -> int:
        """Re-embed the tenant's FAQs, document chunks and memory from the rows."""
        faqs = await self._repo.list_faqs(tenant_id)
        chunks = await self._repo.indexed_chunks(tenant_id)
        turns = await self._repo.memories(tenant_id)
        points: list[VectorPoint] = []
        if faqs:
            points += await asyncio.to_thread(self._retriever.faq_points, faqs)
        for start in range(0, len(chunks), EMBED_BATCH):
            batch = chunks[start : start + EMBED_BATCH]
            points += await asyncio.to_thread(self._retriever.chunk_points, tenant_id, batch)
        if turns:
            points += await asyncio.to_thread(self._retriever.memory_points, turns)
        await self._store.upsert(points)
        version = await self._repo.reindexed(tenant_id)
        await self._announce(tenant_id, version, "reindexed", self.embedding_model)
        log.info("re-indexed %s: %d points with %s", tenant_id, len(points), self.embedding_model)
        return len(points)
