"""Claims of indexing jobs on real PostgreSQL: one replica at a time, a live lease is
respected, an expired one is taken over by exactly one of several sweepers, and the process
that lost a claim can no longer write the job's progress or finish it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from taskpilot.knowledge.chunking import Chunk
from taskpilot.knowledge.domain import Document, Job
from taskpilot.knowledge.job_repository import ClaimLostError, JobRepository
from taskpilot.knowledge.repository import SCHEMA, KnowledgeRepository
from taskpilot.runtime.db import migrate, open_pool

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHUNKS = [Chunk(0, "Hours", "We open at nine."), Chunk(1, "Prices", "A cut is 35 euros.")]


@pytest.fixture
async def repo(fresh_database_url: str) -> AsyncIterator[KnowledgeRepository]:
    """A database of its own: no other test's abandoned job can be swept here."""
    pool: AsyncConnectionPool = await open_pool(fresh_database_url, max_size=4)
    await migrate(pool, "taskpilot.knowledge", SCHEMA)
    yield KnowledgeRepository(pool, "test/model")
    await pool.close()


@pytest.fixture
def jobs(repo: KnowledgeRepository) -> JobRepository:
    return repo.jobs


async def new_job(jobs: JobRepository, worker: str, lease_s: float) -> Job:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    document = Document(
        id=uuid.uuid4().hex,
        tenant_id=tenant,
        title="Salon",
        source="salon.md",
        filename="salon.md",
        media_type="text/markdown",
        status="indexing",
        chunks=len(CHUNKS),
    )
    job = Job(
        id=uuid.uuid4().hex,
        tenant_id=tenant,
        document_id=document.id,
        status="queued",
        total=len(CHUNKS),
        attempts=1,
    )
    await jobs.create(document, job, CHUNKS, worker, lease_s)
    return job


async def test_a_live_claim_is_left_alone(jobs: JobRepository) -> None:
    await new_job(jobs, "a", lease_s=60)
    assert await jobs.claim_next("b", lease_s=60) is None
    assert await jobs.renew("a", [], lease_s=60) == set()


async def test_an_expired_claim_goes_to_exactly_one_sweeper_who_continues_the_work(
    jobs: JobRepository,
) -> None:
    job = await new_job(jobs, "a", lease_s=-1)  # a died: its lease has already run out
    first = await jobs.load(job.tenant_id, job.id, "a")
    assert first is not None and [c.position for c in first.missing] == [0, 1]
    await jobs.save_progress(job.model_copy(update={"done": 1}), "a", [(0, [0.5, 0.25])])

    claims = await asyncio.gather(*(jobs.claim_next(w, lease_s=60) for w in ("b", "c", "d")))
    winners = [(w, c) for w, c in zip("bcd", claims, strict=True) if c is not None]
    assert [c for _, c in winners] == [(job.tenant_id, job.id)]
    [(winner, _)] = winners

    work = await jobs.load(job.tenant_id, job.id, winner, resumed=True)
    assert work is not None and work.job.attempts == 2 and work.job.done == 1
    assert work.vectors == {0: [0.5, 0.25]} and [c.position for c in work.missing] == [1]

    # The old holder (alive after all, say after a long pause) is fenced off.
    with pytest.raises(ClaimLostError):
        await jobs.save_progress(job.model_copy(update={"done": 2}), "a", [(1, [1.0, 0.0])])
    with pytest.raises(ClaimLostError):
        await jobs.finish(job, "a")
    with pytest.raises(ClaimLostError):
        await jobs.fail(job, "a", "the old holder's error")
    assert await jobs.renew("a", [job.id], lease_s=60) == set()
    assert await jobs.renew(winner, [job.id], lease_s=60) == {job.id}

    await jobs.save_progress(job.model_copy(update={"done": 2}), winner, [(1, [1.0, 0.0])])
    assert await jobs.finish(job, winner) == 1  # the tenant's first knowledge version
    done = await jobs.get(job.tenant_id, job.id)
    assert done is not None and (done.status, done.done, done.attempts) == ("done", 2, 2)
    assert await jobs.claim_next("e", lease_s=60) is None  # nothing left to resume


async def test_a_released_claim_is_resumed_at_once(jobs: JobRepository) -> None:
    job = await new_job(jobs, "a", lease_s=60)
    await jobs.release("a", [job.id])
    assert await jobs.claim_next("b", lease_s=60) == (job.tenant_id, job.id)


async def test_deleting_the_document_ends_its_job(repo: KnowledgeRepository) -> None:
    job = await new_job(repo.jobs, "a", lease_s=-1)
    assert await repo.delete_document(job.tenant_id, job.document_id) == 1
    with pytest.raises(ClaimLostError):
        await repo.jobs.save_progress(job, "a", [(0, [0.5, 0.25])])
    assert await repo.jobs.claim_next("b", lease_s=60) is None
    assert await repo.jobs.get(job.tenant_id, job.id) is None
