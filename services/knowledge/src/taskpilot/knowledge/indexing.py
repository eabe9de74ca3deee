"""Indexing a document as a resumable job: embed its chunks batch by batch, then index them.

The process that accepted an upload runs its job at once. Every batch of vectors is saved
with the job's progress (job_repository.py), so when a process dies mid-job, the replica
that takes its claim over embeds only the chunks left, then upserts all of the document's
points. Point ids are deterministic (tenant, document, chunk position), so an upsert repeated
after a crash overwrites instead of duplicating. The points reach the index only once every
chunk is embedded, and the job commits right after: an upload is searchable completely or not
at all, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from taskpilot.knowledge.adapters import VectorStore
from taskpilot.knowledge.chunking import Chunk
from taskpilot.knowledge.domain import Document, Job
from taskpilot.knowledge.job_repository import ClaimLostError, JobRepository, JobWork
from taskpilot.knowledge.repository import StoredChunk
from taskpilot.runtime.lease import owner_id

if TYPE_CHECKING:
    from taskpilot.knowledge.service import Retriever

log = logging.getLogger(__name__)

EMBED_BATCH = 32

Announce = Callable[[str, int, str, str], Awaitable[None]]
"""``(tenant_id, version, change, item_id)``: publish KnowledgeUpdated (after commit)."""


class Indexer:
    def __init__(
        self,
        jobs: JobRepository,
        retriever: Retriever,
        announce: Announce,
        *,
        lease_s: float = 30.0,
        sweep_s: float = 10.0,
        batch: int = EMBED_BATCH,
        worker: str | None = None,
    ):
        self._jobs = jobs
        self._retriever = retriever
        self._announce = announce
        self.lease_s = lease_s
        self.sweep_s = sweep_s
        self.batch = batch
        self.worker = worker or owner_id("knowledge")
        self._running: dict[str, asyncio.Task[None]] = {}
        self._settling: set[str] = set()
        """Jobs finishing or failing: their claim goes with that commit, which is no loss."""

    @property
    def _store(self) -> VectorStore:
        return self._retriever.store

    async def start(self, document: Document, job: Job, chunks: list[Chunk]) -> None:
        """Store the job with this process's claim, then run it in the background."""
        await self._jobs.create(document, job, chunks, self.worker, self.lease_s)
        self._spawn(job.tenant_id, job.id)

    def _spawn(self, tenant_id: str, job_id: str, *, resumed: bool = False) -> asyncio.Task[None]:
        task = asyncio.create_task(self._run(tenant_id, job_id, resumed), name=f"index-{job_id}")
        self._running[job_id] = task
        task.add_done_callback(lambda _: self._forget(job_id))
        return task

    def _forget(self, job_id: str) -> None:
        self._running.pop(job_id, None)
        self._settling.discard(job_id)

    async def _run(self, tenant_id: str, job_id: str, resumed: bool) -> None:
        try:
            work = await self._jobs.load(tenant_id, job_id, self.worker, resumed=resumed)
            if work is None:
                return
            await self._index(work)
        except ClaimLostError:
            log.warning("indexing job %s was taken over or deleted; this process stops", job_id)

    async def _index(self, work: JobWork) -> None:
        job = work.job.model_copy(update={"status": "embedding", "done": len(work.vectors)})
        vectors = dict(work.vectors)
        try:
            missing = work.missing
            for start in range(0, len(missing), self.batch):
                batch = missing[start : start + self.batch]
                texts = [c.titled(work.title) for c in batch]
                embedded = await asyncio.to_thread(self._retriever.embed_passages, texts)
                saved = [(c.position, v) for c, v in zip(batch, embedded, strict=True)]
                vectors.update(saved)
                job = job.model_copy(update={"done": len(vectors)})
                await self._jobs.save_progress(job, self.worker, saved)
            job = job.model_copy(update={"status": "indexing"})
            await self._jobs.save_progress(job, self.worker, [])
            stored = [StoredChunk(job.document_id, work.title, work.source, c) for c in work.chunks]
            points = await asyncio.to_thread(
                self._retriever.chunk_points,
                job.tenant_id,
                stored,
                [vectors[c.position] for c in work.chunks],
            )
            await self._store.upsert(points)
            self._settling.add(job.id)
            version = await self._jobs.finish(job, self.worker)
        except ClaimLostError:
            if await self._jobs.get(job.tenant_id, job.id) is None:
                # Deleted while we embedded or indexed: what we upserted must not stay.
                await self._store.delete_matching(job.tenant_id, document_id=job.document_id)
            raise
        except Exception as exc:  # the job records why; nothing of the document stays indexed
            log.exception("indexing document %s failed", job.document_id)
            await self._undo(job, f"{type(exc).__name__}: {exc}")
            return
        await self._announce(job.tenant_id, version, "document_indexed", job.document_id)

    async def _undo(self, job: Job, error: str) -> None:
        self._settling.add(job.id)
        await self._jobs.fail(job, self.worker, error)  # ClaimLostError: the points are not ours
        try:
            await self._store.delete_matching(job.tenant_id, document_id=job.document_id)
        except Exception:
            # The document row says "failed", so deleting it (which deletes its points again)
            # clears what is left; the dashboard shows the failed document.
            log.exception("could not remove the points of document %s", job.document_id)

    # -- resuming: sweep for abandoned jobs, renew our own claims -----------------------------
    async def resume_abandoned(self) -> int:
        """Take over and finish, one after another, every job whose claim's lease ran out."""
        resumed = 0
        while claimed := await self._jobs.claim_next(self.worker, self.lease_s):
            tenant_id, job_id = claimed
            log.info("resuming indexing job %s of %s", job_id, tenant_id)
            # Shielded: stopping the sweep must not cancel the job behind stop()'s back, which
            # cancels it and ends its lease at once.
            await asyncio.shield(self._spawn(tenant_id, job_id, resumed=True))
            resumed += 1
        return resumed

    async def keep_claims(self) -> None:
        """Renew the leases of the jobs running here; a job whose claim was lost stops."""
        running = dict(self._running)
        held = await self._jobs.renew(self.worker, list(running), self.lease_s)
        for job_id, task in running.items():
            if job_id not in held and job_id not in self._settling and not task.done():
                log.warning("lost the claim of indexing job %s; stopping it", job_id)
                task.cancel()

    async def run_forever(self) -> None:
        """Background task of the service: heartbeat every third of the lease, and a sweep for
        abandoned jobs at start and every ``sweep_s``, run beside the heartbeat."""
        sweeper = asyncio.create_task(self._sweep_forever(), name="knowledge-job-sweep")
        try:
            while True:
                try:
                    await self.keep_claims()
                except Exception:  # PostgreSQL away for a moment: the lease has room
                    log.exception("could not renew indexing claims")
                await asyncio.sleep(self.lease_s / 3)
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.resume_abandoned()
            except Exception:
                log.exception("sweep for abandoned indexing jobs failed")
            await asyncio.sleep(self.sweep_s)

    async def wait(self) -> None:
        """Let running jobs finish (tests, tools)."""
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def stop(self) -> None:
        """Graceful stop: cancel running jobs (their saved progress stays) and end their
        leases, so another replica resumes them at its next sweep instead of after the lease."""
        running = dict(self._running)
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        await self._jobs.release(self.worker, list(running))
