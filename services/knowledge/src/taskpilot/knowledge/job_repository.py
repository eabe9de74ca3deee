"""Indexing jobs in PostgreSQL: what a job must index, how far it got, and who runs it.

A job is durable from its 202 on: the document, its chunks (the exact input of every point)
and the job are written in one transaction, together with a *claim* naming the process that
runs it. Each embedded batch commits its vectors and the job's progress together, so a
process killed mid-job loses at most the batch in hand. The claim has a lease that its holder
renews (heartbeat); a claim whose lease ran out belongs to a dead or stuck process and is
taken over with ``FOR UPDATE SKIP LOCKED`` by exactly one other replica, which continues from
the vectors already saved. Every write of a job's progress and its finish checks, in the same
transaction, that the writer still holds the claim (fencing): a process that lost its claim
cannot overwrite its successor's work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from taskpilot.knowledge.chunking import Chunk
from taskpilot.knowledge.domain import Document, Job
from taskpilot.tenancy import tenant_transaction


class ClaimLostError(RuntimeError):
    """Another process holds this job's claim now (or the job is gone): stop working on it."""


@dataclass(frozen=True)
class JobWork:
    """What a claimed job still has to do: its chunks and the vectors already saved."""

    job: Job
    title: str
    source: str
    chunks: list[Chunk]
    vectors: dict[int, list[float]]
    """Saved vectors by chunk position, of the current embedding model only."""

    @property
    def missing(self) -> list[Chunk]:
        return [c for c in self.chunks if c.position not in self.vectors]


def _pack(vector: Sequence[float]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def _unpack(data: bytes) -> list[float]:
    return [float(x) for x in np.frombuffer(data, dtype="<f4")]


class JobRepository:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        embedding_model: str,
        changed: Callable[[AsyncConnection, str], Awaitable[int]],
    ):
        self._pool = pool
        self._model = embedding_model
        self._changed = changed

    async def create(
        self, document: Document, job: Job, chunks: Sequence[Chunk], worker: str, lease_s: float
    ) -> None:
        """Document, chunks, job and the creator's claim: all or nothing."""
        async with tenant_transaction(self._pool, document.tenant_id) as conn:
            await conn.execute(
                """INSERT INTO knowledge_documents
                   (tenant_id, id, title, source, filename, media_type, status, chunks)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    document.tenant_id,
                    document.id,
                    document.title,
                    document.source,
                    document.filename,
                    document.media_type,
                    document.status,
                    document.chunks,
                ),
            )
            async with conn.cursor() as cur:
                await cur.executemany(
                    """INSERT INTO knowledge_chunks
                       (tenant_id, document_id, position, heading, text)
                       VALUES (%s, %s, %s, %s, %s)""",
                    [(job.tenant_id, document.id, c.position, c.heading, c.text) for c in chunks],
                )
            await conn.execute(
                """INSERT INTO knowledge_jobs
                   (tenant_id, id, document_id, status, done, total, attempts)
                   VALUES (%s, %s, %s, %s, %s, %s, 1)""",
                (job.tenant_id, job.id, job.document_id, job.status, job.done, job.total),
            )
            await conn.execute(
                """INSERT INTO knowledge_job_claims (job_id, tenant_id, worker, lease_until)
                   VALUES (%s, %s, %s, now() + make_interval(secs => %s))""",
                (job.id, job.tenant_id, worker, lease_s),
            )

    async def claim_next(self, worker: str, lease_s: float) -> tuple[str, str] | None:
        """Take over the oldest job whose lease ran out; ``(tenant_id, job_id)`` or None.

        ``SKIP LOCKED``: replicas sweeping at the same moment each take a different job."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                """UPDATE knowledge_job_claims c
                   SET worker = %s, lease_until = now() + make_interval(secs => %s)
                   FROM (SELECT job_id FROM knowledge_job_claims
                         WHERE lease_until < now()
                         ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) expired
                   WHERE c.job_id = expired.job_id
                   RETURNING c.tenant_id, c.job_id""",
                (worker, lease_s),
            )
            row = await cur.fetchone()
        return (row[0], row[1]) if row else None

    async def renew(self, worker: str, job_ids: Sequence[str], lease_s: float) -> set[str]:
        """Heartbeat: extend the leases this worker still holds; the ids it holds."""
        if not job_ids:
            return set()
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                """UPDATE knowledge_job_claims
                   SET lease_until = now() + make_interval(secs => %s)
                   WHERE worker = %s AND job_id = ANY(%s) RETURNING job_id""",
                (lease_s, worker, list(job_ids)),
            )
            return {row[0] for row in await cur.fetchall()}

    async def release(self, worker: str, job_ids: Sequence[str]) -> None:
        """A graceful stop: the leases end now, so another replica resumes at its next sweep."""
        if not job_ids:
            return
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                """UPDATE knowledge_job_claims SET lease_until = now() - interval '1 second'
                   WHERE worker = %s AND job_id = ANY(%s)""",
                (worker, list(job_ids)),
            )

    async def load(
        self, tenant_id: str, job_id: str, worker: str, *, resumed: bool = False
    ) -> JobWork | None:
        """A claimed job's work (a resumption counts as one more attempt); None if it is gone."""
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await _hold(conn, job_id, worker)
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """UPDATE knowledge_jobs SET attempts = attempts + %s::int, updated_at = now()
                   WHERE id = %s AND status NOT IN ('done', 'failed')
                   RETURNING tenant_id, id, document_id, status, done, total, error, attempts""",
                (int(resumed), job_id),
            )
            row = await cur.fetchone()
            if row is None:  # finished or deleted meanwhile: nothing left to claim
                await conn.execute("DELETE FROM knowledge_job_claims WHERE job_id = %s", (job_id,))
                return None
            job = Job.model_validate(row)
            cur2 = await conn.execute(
                "SELECT title, source FROM knowledge_documents WHERE id = %s", (job.document_id,)
            )
            document = await cur2.fetchone()
            if document is None:
                return None
            cur2 = await conn.execute(
                """SELECT position, heading, text FROM knowledge_chunks
                   WHERE document_id = %s ORDER BY position""",
                (job.document_id,),
            )
            chunks = [Chunk(p, h, t) for p, h, t in await cur2.fetchall()]
            cur2 = await conn.execute(
                """SELECT position, vector FROM knowledge_job_vectors
                   WHERE document_id = %s AND embedding_model = %s""",
                (job.document_id, self._model),
            )
            vectors = {p: _unpack(v) for p, v in await cur2.fetchall()}
        return JobWork(job, document[0], document[1], chunks, vectors)

    async def save_progress(
        self, job: Job, worker: str, vectors: Sequence[tuple[int, Sequence[float]]]
    ) -> None:
        """One embedded batch and the job's progress, committed together by the claim's holder."""
        async with tenant_transaction(self._pool, job.tenant_id) as conn:
            await _hold(conn, job.id, worker)
            async with conn.cursor() as cur:
                await cur.executemany(
                    """INSERT INTO knowledge_job_vectors
                       (tenant_id, document_id, position, embedding_model, vector)
                       VALUES (%s, %s, %s, %s, %s)
                       ON CONFLICT (tenant_id, document_id, position) DO UPDATE
                       SET embedding_model = EXCLUDED.embedding_model, vector = EXCLUDED.vector""",
                    [
                        (job.tenant_id, job.document_id, p, self._model, _pack(v))
                        for p, v in vectors
                    ],
                )
            await conn.execute(
                """UPDATE knowledge_jobs SET status = %s, done = %s, updated_at = now()
                   WHERE id = %s""",
                (job.status, job.done, job.id),
            )

    async def finish(self, job: Job, worker: str) -> int:
        """Document indexed, job done, its working state dropped, version bumped: all or
        nothing, and only by the claim's holder."""
        async with tenant_transaction(self._pool, job.tenant_id) as conn:
            await _hold(conn, job.id, worker)
            await conn.execute(
                "UPDATE knowledge_documents SET status = 'indexed', chunks = %s WHERE id = %s",
                (job.total, job.document_id),
            )
            await conn.execute(
                """UPDATE knowledge_jobs SET status = 'done', done = %s, total = %s,
                   updated_at = now() WHERE id = %s""",
                (job.total, job.total, job.id),
            )
            await _forget(conn, job)
            return await self._changed(conn, job.tenant_id)

    async def fail(self, job: Job, worker: str, error: str) -> None:
        """Document and job failed, working state dropped: only by the claim's holder."""
        async with tenant_transaction(self._pool, job.tenant_id) as conn:
            await _hold(conn, job.id, worker)
            await conn.execute(
                "UPDATE knowledge_documents SET status = 'failed', error = %s WHERE id = %s",
                (error, job.document_id),
            )
            await conn.execute(
                """UPDATE knowledge_jobs SET status = 'failed', error = %s, updated_at = now()
                   WHERE id = %s""",
                (error, job.id),
            )
            await _forget(conn, job)

    async def get(self, tenant_id: str, job_id: str) -> Job | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """SELECT tenant_id, id, document_id, status, done, total, error, attempts
                   FROM knowledge_jobs WHERE id = %s""",
                (job_id,),
            )
            row = await cur.fetchone()
        return Job.model_validate(row) if row else None

    @staticmethod
    async def delete_document_jobs(conn: AsyncConnection, document_id: str) -> None:
        """Inside a document's deletion: its jobs, their claims and vectors (a running job
        finds its claim gone and stops)."""
        await conn.execute(
            """DELETE FROM knowledge_job_claims
               WHERE job_id IN (SELECT id FROM knowledge_jobs WHERE document_id = %s)""",
            (document_id,),
        )
        await conn.execute(
            "DELETE FROM knowledge_job_vectors WHERE document_id = %s", (document_id,)
        )
        await conn.execute("DELETE FROM knowledge_jobs WHERE document_id = %s", (document_id,))


async def _hold(conn: AsyncConnection, job_id: str, worker: str) -> None:
    """Raise unless ``worker`` holds the job's claim; lock it until the transaction ends, so
    no one takes it over between this check and the commit."""
    cur = await conn.execute(
        "SELECT 1 FROM knowledge_job_claims WHERE job_id = %s AND worker = %s FOR UPDATE",
        (job_id, worker),
    )
    if await cur.fetchone() is None:
        raise ClaimLostError(job_id)


async def _forget(conn: AsyncConnection, job: Job) -> None:
    await conn.execute(
        "DELETE FROM knowledge_job_vectors WHERE document_id = %s", (job.document_id,)
    )
    await conn.execute("DELETE FROM knowledge_job_claims WHERE job_id = %s", (job.id,))
