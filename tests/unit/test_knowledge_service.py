"""Knowledge use cases with hand-written fakes: order of writes, all-or-nothing indexing,
refusals. Real PostgreSQL, NATS and stores are in tests/integration/knowledge."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from taskpilot.contracts import Message
from taskpilot.contracts.knowledge import KnowledgeUpdated, SearchKnowledge
from taskpilot.knowledge.chunking import Chunk
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
    UnsupportedDocumentError,
    VectorPoint,
    chunk_item_id,
    memory_item_id,
    point_id,
)
from taskpilot.knowledge.job_repository import JobWork
from taskpilot.knowledge.service import KnowledgeService, Retriever

pytestmark = pytest.mark.asyncio(loop_scope="session")


class WordEmbedder:
    name = "fake/words-32"
    dim = 32

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.full((len(texts), self.dim), 1e-3, dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, hashlib.sha1(word.encode()).digest()[0] % self.dim] += 1  # noqa: S324
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    embed_queries = embed_passages = _encode


@dataclass
class FakeStore:
    space: EmbeddingSpace
    points: dict[str, VectorPoint] = field(default_factory=dict)
    fail_upserts: bool = False
    log: list[str] = field(default_factory=list)
    during_search: Callable[[], None] | None = None

    async def open(self) -> None: ...

    async def upsert(self, points: Sequence[VectorPoint]) -> None:
        if self.fail_upserts:
            raise RuntimeError("store down")
        if any(p.embedding_model != self.space.model for p in points):
            raise EmbeddingMismatchError("other model")
        self.points |= {p.id: p for p in points}
        self.log.append(f"upsert {len(points)}")

    async def search(self, query: StoreQuery) -> list[Candidate]:
        if query.space != self.space:
            raise EmbeddingMismatchError("other model")
        if self.during_search is not None:
            self.during_search()
        return [
            Candidate(p.id, p.payload(), float(np.dot(p.vector, query.dense)))
            for p in self.points.values()
            if p.tenant_id == query.tenant_id
            and p.kind in query.kinds
            and (query.lead_id is None or p.lead_id == query.lead_id)
        ]

    async def delete(self, tenant_id: str, point_ids: Sequence[str]) -> None:
        for pid in point_ids:
            if pid in self.points and self.points[pid].tenant_id == tenant_id:
                del self.points[pid]

    async def delete_matching(
        self, tenant_id: str, *, document_id: str | None = None, lead_id: str | None = None
    ) -> None:
        self.log.append(f"delete {document_id or lead_id}")
        self.points = {
            k: p
            for k, p in self.points.items()
            if not (
                p.tenant_id == tenant_id
                and (
                    (document_id and p.document_id == document_id)
                    or (lead_id and p.lead_id == lead_id)
                )
            )
        }

    async def count(self, tenant_id: str, kinds: Sequence[Kind] = ()) -> int:
        return sum(1 for p in self.points.values() if p.tenant_id == tenant_id)

    async def close(self) -> None: ...


@dataclass
class FakeJobs:
    """Jobs held in memory; one process, so every claim is this process's."""

    bump: Callable[[str], int]
    documents: dict[str, Document] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    chunks: dict[str, list[Chunk]] = field(default_factory=dict)
    vectors: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    abandoned: list[tuple[str, str]] = field(default_factory=list)

    async def create(
        self, document: Document, job: Job, chunks: Sequence[Chunk], worker: str, lease_s: float
    ) -> None:
        self.documents[document.id], self.jobs[job.id] = document, job
        self.chunks[job.id], self.vectors[job.id] = list(chunks), {}

    async def load(
        self, tenant_id: str, job_id: str, worker: str, *, resumed: bool = False
    ) -> JobWork:
        job, document = self.jobs[job_id], self.documents[self.jobs[job_id].document_id]
        saved = dict(self.vectors[job_id])
        return JobWork(job, document.title, document.source, self.chunks[job_id], saved)

    async def claim_next(self, worker: str, lease_s: float) -> tuple[str, str] | None:
        return self.abandoned.pop(0) if self.abandoned else None

    async def save_progress(
        self, job: Job, worker: str, vectors: Sequence[tuple[int, Sequence[float]]]
    ) -> None:
        self.jobs[job.id] = job
        self.vectors[job.id] |= {p: list(v) for p, v in vectors}

    async def finish(self, job: Job, worker: str) -> int:
        self.jobs[job.id] = job.model_copy(update={"status": "done"})
        return self.bump(job.tenant_id)

    async def fail(self, job: Job, worker: str, error: str) -> None:
        self.jobs[job.id] = job.model_copy(update={"status": "failed", "error": error})


@dataclass
class FakeRepository:
    version_of: dict[str, int] = field(default_factory=dict)
    indexed_of: dict[str, int] = field(default_factory=dict)
    faqs: dict[str, Faq] = field(default_factory=dict)
    memories: list[MemoryTurn] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.jobs = FakeJobs(self._bump)

    def _bump(self, tenant_id: str) -> int:
        self.version_of[tenant_id] = self.version_of.get(tenant_id, 0) + 1
        self.log.append(f"commit v{self.version_of[tenant_id]}")
        return self.version_of[tenant_id]

    async def add_faq(self, tenant_id: str, question: str, answer: str) -> tuple[Faq, int]:
        faq = Faq(id=f"f{len(self.faqs)}", tenant_id=tenant_id, question=question, answer=answer)
        self.faqs[faq.id] = faq
        return faq, self._bump(tenant_id)

    async def indexed_version(self, tenant_id: str) -> int:
        return self.indexed_of.get(tenant_id, 0)

    async def mark_indexed(self, tenant_id: str, version: int) -> None:
        self.indexed_of[tenant_id] = max(self.indexed_of.get(tenant_id, 0), version)

    async def save_memory(self, turn: MemoryTurn) -> None:
        self.memories.append(turn)

    async def erase_memories(self, tenant_id: str, lead_id: str) -> int:
        self.log.append(f"erase rows {lead_id}")
        return 1


@dataclass
class FakeBus:
    published: list[Message] = field(default_factory=list)
    log: list[str] | None = None

    async def publish(self, message: Message, *, msg_id: str | None = None) -> bool:
        self.published.append(message)
        if self.log is not None:
            self.log.append(f"publish {message.type}")
        return True


def knowledge(
    repo: FakeRepository, store: FakeStore, bus: FakeBus, embedder: WordEmbedder, **settings: int
) -> KnowledgeService:
    return KnowledgeService(
        repo,  # type: ignore[arg-type]
        Retriever(store, embedder, HybridPolicy(min_score=-1)),
        bus,
        **settings,
    )


@pytest.fixture
def parts() -> tuple[KnowledgeService, FakeRepository, FakeStore, FakeBus]:
    embedder = WordEmbedder()
    store = FakeStore(EmbeddingSpace(embedder.name, embedder.dim))
    repo = FakeRepository()
    bus = FakeBus(log=repo.log)
    return knowledge(repo, store, bus, embedder, max_upload_bytes=1000), repo, store, bus


async def test_a_faq_is_committed_then_indexed_then_announced(
    parts: tuple[KnowledgeService, FakeRepository, FakeStore, FakeBus],
) -> None:
    service, repo, store, bus = parts
    faq = await service.add_faq("acme", "Do you open on Sunday?", "No.")
    assert repo.log == ["commit v1", "publish KnowledgeUpdated"]
    [point] = store.points.values()
    assert (point.item_id, point.embedding_model, point.embedding_dim) == (
        faq.id,
        "fake/words-32",
        32,
    )
    [event] = bus.published
    assert isinstance(event, KnowledgeUpdated) and (event.version, event.change) == (
        1,
        "faq_created",
    )


async def test_a_document_is_announced_only_once_fully_indexed(
    parts: tuple[KnowledgeService, FakeRepository, FakeStore, FakeBus],
) -> None:
    service, repo, store, bus = parts
    job = await service.start_upload(
        "acme", DocumentIn(filename="a.md", data=b"# A\n\nalpha text\n\n# B\n\nbeta text\n")
    )
    assert job.total == 2 and bus.published == []
    await service.wait_for_jobs()
    assert repo.jobs.jobs[job.id].status == "done"
    assert store.log == ["upsert 2"] and repo.log[-2:] == ["commit v1", "publish KnowledgeUpdated"]


async def test_a_failing_index_leaves_no_points_and_no_new_version(
    parts: tuple[KnowledgeService, FakeRepository, FakeStore, FakeBus],
) -> None:
    service, repo, store, bus = parts
    store.fail_upserts = True
    job = await service.start_upload("acme", DocumentIn(filename="a.txt", data=b"some text"))
    await service.wait_for_jobs()
    failed = repo.jobs.jobs[job.id]
    assert failed.status == "failed" and "store down" in str(failed.error)
    assert store.log == [f"delete {job.document_id}"] and store.points == {}
    assert bus.published == [] and repo.version_of == {}


class CountingEmbedder(WordEmbedder):
    def __init__(self) -> None:
        self.passages: list[str] = []
        self.queries: list[str] = []

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.passages += texts
        return self._encode(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.queries += texts
        return self._encode(texts)


async def test_a_resumed_job_embeds_only_the_chunks_left(
    parts: tuple[KnowledgeService, FakeRepository, FakeStore, FakeBus],
) -> None:
    _, repo, store, bus = parts
    embedder = CountingEmbedder()
    service = knowledge(repo, store, bus, embedder)
    chunks = [Chunk(0, "Hours", "We open at nine."), Chunk(1, "Prices", "A cut is 35 euros.")]
    document = Document(
        id="d1",
        tenant_id="acme",
        title="Salon",
        source="salon.md",
        filename="salon.md",
        media_type="text/markdown",
        status="indexing",
        chunks=2,
    )
    job = Job(id="j1", tenant_id="acme", document_id="d1", status="embedding", done=1, total=2)
    # A process died after saving the first chunk's vector.
    await repo.jobs.create(document, job, chunks, "dead", 30.0)
    [saved] = embedder.embed_passages([chunks[0].titled("Salon")])
    repo.jobs.vectors["j1"] = {0: [float(x) for x in saved]}
    repo.jobs.abandoned.append(("acme", "j1"))
    embedder.passages.clear()

    assert await service.indexing.resume_abandoned() == 1
    assert embedder.passages == [chunks[1].titled("Salon")]
    assert repo.jobs.jobs["j1"].status == "done"
    assert set(store.points) == {point_id("acme", "chunk", chunk_item_id("d1", n)) for n in (0, 1)}
    [event] = bus.published
    assert isinstance(event, KnowledgeUpdated) and event.change == "document_indexed"


async def test_bad_uploads_are_refused_before_anything_is_stored(
    parts: tuple[KnowledgeService, FakeRepository, FakeStore, FakeBus],
) -> None:
    service, repo, store, _ = parts
    with pytest.raises(DocumentTooLargeError):
        await service.start_upload("acme", DocumentIn(filename="a.txt", data=b"x" * 1001))
    with pytest.raises(UnsupportedDocumentError):
        await service.start_upload("acme", DocumentIn(filename="a.xlsx", data=b"PK"))
    assert repo.jobs.documents == {} and store.points == {}


async def test_a_query_vector_of_another_model_is_refused(
    parts: tuple[KnowledgeService, FakeRepository, FakeStore, FakeBus],
) -> None:
    service, *_ = parts
    request = SearchKnowledge(
        tenant_id="acme", correlation_id="c", query="q", vector=[0.1] * 32, embedding_model="x"
    )
    with pytest.raises(EmbeddingMismatchError):
        await service.search(request)


async def test_search_ranks_and_cites(
    parts: tuple[KnowledgeService, FakeRepository, FakeStore, FakeBus],
) -> None:
    service, *_ = parts
    await service.add_faq("acme", "gift cards", "From 20 euros.")
    await service.add_faq("acme", "parking nearby", "Plaza Mayor.")
    await service.add_faq("other", "gift cards", "Not ours.")
    result = await service.search(
        SearchKnowledge(tenant_id="acme", correlation_id="c", query="gift cards", top_k=1)
    )
    assert [h.answer for h in result.hits] == ["From 20 euros."]
    assert result.knowledge_version == 2 and result.embedding_model == "fake/words-32"


async def test_erasing_a_lead_forgets_rows_before_points(
    parts: tuple[KnowledgeService, FakeRepository, FakeStore, FakeBus],
) -> None:
    service, repo, store, _ = parts
    await service.remember(
        MemoryTurn(tenant_id="acme", lead_id="l1", turn_id="t1", lead_text="hi", reply_text="hello")
    )
    assert await service.erase_lead("acme", "l1") == 1
    assert repo.log[-1] == "erase rows l1" and store.log[-1] == "delete l1"
    assert store.points == {}


async def test_a_turn_is_remembered_with_its_question_vector_from_the_search(
    parts: tuple[KnowledgeService, FakeRepository, FakeStore, FakeBus],
) -> None:
    _, repo, store, bus = parts
    embedder = CountingEmbedder()
    service = knowledge(repo, store, bus, embedder)
    asked = [0.0] * 31 + [1.0]  # what inference sent with its search
    await service.search(
        SearchKnowledge(
            tenant_id="acme",
            correlation_id="c",
            query="do you cut curly hair?",
            vector=asked,
            embedding_model=embedder.name,
        )
    )
    turns = [
        MemoryTurn(
            tenant_id="acme",
            lead_id="l1",
            turn_id="t1",
            lead_text="do you cut curly hair?",
            reply_text="Yes, every day.",
        ),
        # The same words from another tenant: that tenant's search never sent this vector.
        MemoryTurn(
            tenant_id="other",
            lead_id="l2",
            turn_id="t1",
            lead_text="do you cut curly hair?",
            reply_text="No.",
        ),
    ]
    embedder.queries.clear()
    await asyncio.gather(*(service.remember(t) for t in turns))

    assert embedder.queries == ["do you cut curly hair?"] and embedder.passages == []
    acme = store.points[point_id("acme", "memory", memory_item_id("l1", "t1"))]
    other = store.points[point_id("other", "memory", memory_item_id("l2", "t1"))]
    assert acme.vector == asked
    assert other.vector == [float(x) for x in embedder._encode(["do you cut curly hair?"])[0]]
    assert acme.answer == "Yes, every day." and acme.text == "do you cut curly hair?"


async def test_the_version_given_with_hits_is_never_newer_than_the_hits(
    parts: tuple[KnowledgeService, FakeRepository, FakeStore, FakeBus],
) -> None:
    """A change commits its version before its points reach the index: hits labelled with the
    committed version could be the old content's (and inference would cache an answer from
    them under a version its KnowledgeUpdated does not drop)."""
    service, repo, store, _ = parts
    await service.add_faq("acme", "gift cards", "From 20 euros.")
    repo._bump("acme")  # a second change committed, its points not yet in the index
    store.during_search = lambda: repo._bump("acme")  # and a third commits during the search
    request = SearchKnowledge(tenant_id="acme", correlation_id="c", query="gift cards", top_k=1)
    assert (await service.search(request)).knowledge_version == 1
    await service.add_faq("acme", "parking", "Plaza Mayor.")  # indexed, then announced
    store.during_search = None
    assert (await service.search(request)).knowledge_version == repo.version_of["acme"] == 4
