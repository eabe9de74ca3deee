"""Knowledge rows in PostgreSQL: FAQs, documents and their chunks, indexing jobs, lead memory,
knowledge versions. Every tenant query runs inside :func:`tenant_transaction` (row-level
security); the text of every indexed item lives here, so the vector index can be rebuilt.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from taskpilot.knowledge.chunking import Chunk
from taskpilot.knowledge.domain import Document, Faq, MemoryTurn
from taskpilot.knowledge.job_repository import JobRepository
from taskpilot.tenancy import tenant_transaction
from taskpilot.tenancy.rls import APP_ROLE, ensure_app_role_sql, tenant_table_sql

TENANT_TABLES = (
    "knowledge_faqs",
    "knowledge_versions",
    "knowledge_documents",
    "knowledge_chunks",
    "knowledge_jobs",
    "knowledge_job_vectors",
    "knowledge_memories",
)

SCHEMA = (
    ensure_app_role_sql()
    + """
CREATE TABLE IF NOT EXISTS knowledge_faqs (
    tenant_id   text NOT NULL,
    id          text NOT NULL,
    question    text NOT NULL,
    answer      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE IF NOT EXISTS knowledge_versions (
    tenant_id   text PRIMARY KEY,
    version     bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS knowledge_documents (
    tenant_id   text NOT NULL,
    id          text NOT NULL,
    title       text NOT NULL,
    source      text NOT NULL,
    filename    text NOT NULL,
    media_type  text NOT NULL,
    status      text NOT NULL,
    chunks      integer NOT NULL DEFAULT 0,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE IF NOT EXISTS knowledge_chunks (
    tenant_id   text NOT NULL,
    document_id text NOT NULL,
    position    integer NOT NULL,
    heading     text NOT NULL,
    text        text NOT NULL,
    PRIMARY KEY (tenant_id, document_id, position)
);
CREATE TABLE IF NOT EXISTS knowledge_jobs (
    tenant_id   text NOT NULL,
    id          text NOT NULL,
    document_id text NOT NULL,
    status      text NOT NULL,
    done        integer NOT NULL DEFAULT 0,
    total       integer NOT NULL DEFAULT 0,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
ALTER TABLE knowledge_jobs ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0;
-- The last version whose content the index holds (set just before it is announced); NULL in
-- rows from before it existed, read as the version.
ALTER TABLE knowledge_versions ADD COLUMN IF NOT EXISTS indexed_version bigint;
-- A running job's embedded chunks (its progress), dropped when the job ends.
CREATE TABLE IF NOT EXISTS knowledge_job_vectors (
    tenant_id        text NOT NULL,
    document_id      text NOT NULL,
    position         integer NOT NULL,
    embedding_model  text NOT NULL,
    vector           bytea NOT NULL,
    PRIMARY KEY (tenant_id, document_id, position)
);
-- Who runs each unfinished job, until when (job_repository.py). Ids only, no tenant content,
-- so no row-level security: a replica's sweep must see every tenant's abandoned jobs.
CREATE TABLE IF NOT EXISTS knowledge_job_claims (
    job_id       text PRIMARY KEY,
    tenant_id    text NOT NULL,
    worker       text NOT NULL,
    lease_until  timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS knowledge_job_claims_lease ON knowledge_job_claims (lease_until);
CREATE TABLE IF NOT EXISTS knowledge_memories (
    tenant_id   text NOT NULL,
    lead_id     text NOT NULL,
    turn_id     text NOT NULL,
    lead_text   text NOT NULL,
    reply_text  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, lead_id, turn_id)
);
-- Which embedding model indexed each tenant's points. No tenant content, so no row-level
-- security: the re-index after a model change must list the tenants it has to rebuild.
CREATE TABLE IF NOT EXISTS knowledge_index_models (
    tenant_id        text PRIMARY KEY,
    embedding_model  text NOT NULL
);
"""
    + "".join(tenant_table_sql(t) for t in TENANT_TABLES)
    + f"GRANT SELECT, INSERT, UPDATE ON knowledge_index_models TO {APP_ROLE};\n"
    + f"GRANT SELECT, INSERT, UPDATE, DELETE ON knowledge_job_claims TO {APP_ROLE};\n"
)


@dataclass(frozen=True)
class StoredChunk:
    document_id: str
    title: str
    source: str
    chunk: Chunk


class KnowledgeRepository:
    """All knowledge SQL. Writes that change what a tenant's leads can be told bump the
    tenant's knowledge version in the same transaction and return it."""

    def __init__(self, pool: AsyncConnectionPool, embedding_model: str):
        self._pool = pool
        self._model = embedding_model
        self.jobs = JobRepository(pool, embedding_model, self._changed)

    # -- FAQs -----------------------------------------------------------------------------
    async def add_faq(self, tenant_id: str, question: str, answer: str) -> tuple[Faq, int]:
        faq = Faq(id=uuid.uuid4().hex, tenant_id=tenant_id, question=question, answer=answer)
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                """INSERT INTO knowledge_faqs (tenant_id, id, question, answer)
                   VALUES (%s, %s, %s, %s)""",
                (tenant_id, faq.id, question, answer),
            )
            version = await self._changed(conn, tenant_id)
        return faq, version

    async def update_faq(
        self, tenant_id: str, faq_id: str, question: str, answer: str
    ) -> int | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                """UPDATE knowledge_faqs SET question = %s, answer = %s, updated_at = now()
                   WHERE id = %s""",
                (question, answer, faq_id),
            )
            if cur.rowcount == 0:
                return None
            return await self._changed(conn, tenant_id)

    async def delete_faq(self, tenant_id: str, faq_id: str) -> int | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute("DELETE FROM knowledge_faqs WHERE id = %s", (faq_id,))
            if cur.rowcount == 0:
                return None
            return await self._changed(conn, tenant_id)

    async def list_faqs(self, tenant_id: str) -> list[Faq]:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT tenant_id, id, question, answer FROM knowledge_faqs ORDER BY created_at, id"
            )
            return [Faq.model_validate(row) for row in await cur.fetchall()]

    # -- documents (their indexing jobs: job_repository.py) ------------------------------------
    async def get_document(self, tenant_id: str, document_id: str) -> Document | None:
        documents = await self._documents(tenant_id, document_id)
        return documents[0] if documents else None

    async def list_documents(self, tenant_id: str) -> list[Document]:
        return await self._documents(tenant_id, None)

    async def _documents(self, tenant_id: str, document_id: str | None) -> list[Document]:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """SELECT tenant_id, id, title, source, filename, media_type, status, chunks, error
                   FROM knowledge_documents WHERE %s::text IS NULL OR id = %s
                   ORDER BY created_at, id""",
                (document_id, document_id),
            )
            return [Document.model_validate(row) for row in await cur.fetchall()]

    async def delete_document(self, tenant_id: str, document_id: str) -> int | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "DELETE FROM knowledge_documents WHERE id = %s", (document_id,)
            )
            if cur.rowcount == 0:
                return None
            await conn.execute(
                "DELETE FROM knowledge_chunks WHERE document_id = %s", (document_id,)
            )
            await JobRepository.delete_document_jobs(conn, document_id)
            return await self._changed(conn, tenant_id)

    async def indexed_chunks(self, tenant_id: str) -> list[StoredChunk]:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                """SELECT c.document_id, d.title, d.source, c.position, c.heading, c.text
                   FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id
                   WHERE d.status = 'indexed' ORDER BY c.document_id, c.position"""
            )
            return [
                StoredChunk(doc, title, source, Chunk(position, heading, text))
                for doc, title, source, position, heading, text in await cur.fetchall()
            ]

    # -- lead memory ----------------------------------------------------------------------------
    async def save_memory(self, turn: MemoryTurn) -> None:
        async with tenant_transaction(self._pool, turn.tenant_id) as conn:
            await conn.execute(
                """INSERT INTO knowledge_memories
                   (tenant_id, lead_id, turn_id, lead_text, reply_text)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (tenant_id, lead_id, turn_id) DO UPDATE
                   SET lead_text = EXCLUDED.lead_text, reply_text = EXCLUDED.reply_text""",
                (turn.tenant_id, turn.lead_id, turn.turn_id, turn.lead_text, turn.reply_text),
            )
            await self._register(conn, turn.tenant_id)

    async def memories(self, tenant_id: str) -> list[MemoryTurn]:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """SELECT tenant_id, lead_id, turn_id, lead_text, reply_text
                   FROM knowledge_memories ORDER BY created_at"""
            )
            return [MemoryTurn.model_validate(row) for row in await cur.fetchall()]

    async def erase_memories(self, tenant_id: str, lead_id: str) -> int:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "DELETE FROM knowledge_memories WHERE lead_id = %s", (lead_id,)
            )
            return cur.rowcount

    async def erase_memories_before(
        self, tenant_id: str, lead_id: str, before: datetime
    ) -> list[str]:
        """Delete the lead's turns remembered before ``before``; their turn ids."""
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                """DELETE FROM knowledge_memories WHERE lead_id = %s AND created_at < %s
                   RETURNING turn_id""",
                (lead_id, before),
            )
            return [row[0] for row in await cur.fetchall()]

    # -- versions and the embedding model ---------------------------------------------------------
    async def indexed_version(self, tenant_id: str) -> int:
        """The last version whose content is in the index (see :meth:`mark_indexed`)."""
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "SELECT coalesce(indexed_version, version) FROM knowledge_versions"
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def mark_indexed(self, tenant_id: str, version: int) -> None:
        """The index now holds ``version``'s content (never moves back)."""
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                """UPDATE knowledge_versions
                   SET indexed_version = greatest(coalesce(indexed_version, 0), %s)""",
                (version,),
            )

    async def tenants_indexed_with_another_model(self) -> list[str]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT tenant_id FROM knowledge_index_models
                   WHERE embedding_model <> %s ORDER BY tenant_id""",
                (self._model,),
            )
            return [row[0] for row in await cur.fetchall()]

    async def reindexed(self, tenant_id: str) -> int:
        """The tenant's points now come from the current model: record it, bump the version."""
        async with tenant_transaction(self._pool, tenant_id) as conn:
            return await self._changed(conn, tenant_id)

    async def _changed(self, conn: AsyncConnection, tenant_id: str) -> int:
        await self._register(conn, tenant_id)
        cur = await conn.execute(
            """INSERT INTO knowledge_versions (tenant_id, version) VALUES (%s, 1)
               ON CONFLICT (tenant_id) DO UPDATE SET version = knowledge_versions.version + 1
               RETURNING version""",
            (tenant_id,),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def _register(self, conn: AsyncConnection, tenant_id: str) -> None:
        await conn.execute(
            """INSERT INTO knowledge_index_models (tenant_id, embedding_model) VALUES (%s, %s)
               ON CONFLICT (tenant_id) DO UPDATE SET embedding_model = EXCLUDED.embedding_model""",
            (tenant_id, self._model),
        )
