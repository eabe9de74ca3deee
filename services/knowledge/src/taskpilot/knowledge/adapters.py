"""Knowledge I/O: the vector-store port with its Qdrant adapter, and the PostgreSQL repository."""

from __future__ import annotations

import uuid
import warnings
from typing import Protocol

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from qdrant_client import AsyncQdrantClient, models

from taskpilot.contracts.knowledge import KnowledgeHit
from taskpilot.knowledge.domain import Faq, VectorPoint
from taskpilot.tenancy import tenant_transaction
from taskpilot.tenancy.rls import ensure_app_role_sql, tenant_table_sql


class VectorStore(Protocol):
    """Tenant-scoped vector search. Every read and delete is filtered by tenant inside."""

    async def ensure_collection(self, dim: int) -> None:
        """Create the shared collection and its tenant index if missing."""
        ...

    async def upsert(self, points: list[VectorPoint]) -> None:
        """Insert or overwrite points (ids are deterministic)."""
        ...

    async def search(
        self, tenant_id: str, vector: list[float], top_k: int, kinds: list[str]
    ) -> list[KnowledgeHit]:
        """The tenant's nearest points, best first, never another tenant's."""
        ...

    async def delete(self, tenant_id: str, point_ids: list[str]) -> None:
        """Delete the tenant's points with these ids (others' are untouched)."""
        ...


def tenant_filter(tenant_id: str, kinds: list[str] | None = None) -> models.Filter:
    """The one place a Qdrant filter is built: tenant first, always."""
    must: list[models.Condition] = [
        models.FieldCondition(key="tenant_id", match=models.MatchValue(value=tenant_id))
    ]
    if kinds:
        must.append(models.FieldCondition(key="kind", match=models.MatchAny(any=kinds)))
    return models.Filter(must=must)


class QdrantVectorStore:
    """One shared collection, ``tenant_id`` payload indexed as the tenant key."""

    def __init__(self, client: AsyncQdrantClient, collection: str):
        self._client = client
        self._collection = collection

    async def ensure_collection(self, dim: int) -> None:
        if not await self._client.collection_exists(self._collection):
            await self._client.create_collection(
                self._collection,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            )
            with warnings.catch_warnings():
                # Local mode ignores payload indexes (and says so); a server needs this one.
                warnings.simplefilter("ignore", UserWarning)
                await self._client.create_payload_index(
                    self._collection,
                    "tenant_id",
                    models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
                )

    async def upsert(self, points: list[VectorPoint]) -> None:
        await self._client.upsert(
            self._collection,
            points=[
                models.PointStruct(
                    id=p.id, vector=p.vector, payload=p.model_dump(exclude={"id", "vector"})
                )
                for p in points
            ],
            wait=True,
        )

    async def search(
        self, tenant_id: str, vector: list[float], top_k: int, kinds: list[str]
    ) -> list[KnowledgeHit]:
        response = await self._client.query_points(
            self._collection,
            query=vector,
            query_filter=tenant_filter(tenant_id, kinds),
            limit=top_k,
            with_payload=True,
        )
        hits = []
        for point in response.points:
            payload = point.payload or {}
            if payload.get("tenant_id") != tenant_id:  # belt and braces
                continue
            hits.append(
                KnowledgeHit(
                    id=str(payload.get("item_id", point.id)),
                    kind=payload["kind"],
                    title=payload.get("title", ""),
                    text=payload.get("text", ""),
                    answer=payload.get("answer"),
                    score=float(point.score),
                    document_id=payload.get("document_id"),
                    position=payload.get("position"),
                )
            )
        return hits

    async def delete(self, tenant_id: str, point_ids: list[str]) -> None:
        await self._client.delete(
            self._collection,
            points_selector=models.FilterSelector(
                filter=models.Filter(
                    must=[
                        *tenant_filter(tenant_id).must,  # type: ignore[misc]
                        models.HasIdCondition(has_id=list(point_ids)),
                    ]
                )
            ),
            wait=True,
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
"""
    + tenant_table_sql("knowledge_faqs")
    + tenant_table_sql("knowledge_versions")
)


class KnowledgeRepository:
    """FAQ rows and knowledge versions; every query runs inside the tenant's RLS scope."""

    def __init__(self, pool: AsyncConnectionPool):
        self._pool = pool

    async def add_faq(self, tenant_id: str, question: str, answer: str) -> tuple[Faq, int]:
        faq = Faq(id=uuid.uuid4().hex, tenant_id=tenant_id, question=question, answer=answer)
        async with tenant_transaction(self._pool, tenant_id) as conn:
            await conn.execute(
                """INSERT INTO knowledge_faqs (tenant_id, id, question, answer)
                   VALUES (%s, %s, %s, %s)""",
                (tenant_id, faq.id, question, answer),
            )
            version = await self._bump(conn, tenant_id)
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
            return await self._bump(conn, tenant_id)

    async def delete_faq(self, tenant_id: str, faq_id: str) -> int | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute("DELETE FROM knowledge_faqs WHERE id = %s", (faq_id,))
            if cur.rowcount == 0:
                return None
            return await self._bump(conn, tenant_id)

    async def list_faqs(self, tenant_id: str) -> list[Faq]:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT tenant_id, id, question, answer FROM knowledge_faqs ORDER BY created_at"
            )
            return [Faq.model_validate(row) for row in await cur.fetchall()]

    async def version(self, tenant_id: str) -> int:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute("SELECT version FROM knowledge_versions")
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _bump(self, conn: object, tenant_id: str) -> int:
        cur = await conn.execute(  # type: ignore[attr-defined]
            """INSERT INTO knowledge_versions (tenant_id, version) VALUES (%s, 1)
               ON CONFLICT (tenant_id) DO UPDATE SET version = knowledge_versions.version + 1
               RETURNING version""",
            (tenant_id,),
        )
        row = await cur.fetchone()
        return int(row[0])
