"""The vector-store port and its adapters: Qdrant (qdrant-client: a server, or local mode) and
Qdrant Edge (``qdrant-edge-py``: Qdrant's in-process engine, the embedded default).

One shared collection per embedding space, every point carrying ``tenant_id`` (indexed as the
tenant key); every read and delete is scoped by :func:`tenant_scope`, the one place the tenant
condition is decided. The PostgreSQL repository lives in :mod:`taskpilot.knowledge.repository`.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import qdrant_edge as edge
from qdrant_client import AsyncQdrantClient, models

from taskpilot.knowledge.domain import (
    Candidate,
    EmbeddingMismatchError,
    EmbeddingSpace,
    Kind,
    StoreQuery,
    VectorPoint,
)

DENSE = "dense"
KEYWORDS = "keywords"
INDEXED_FIELDS = ("kind", "document_id", "lead_id")


class VectorStore(Protocol):
    """Tenant-scoped hybrid vector search over one embedding space.

    Every read and delete is filtered by tenant inside the adapter, so no caller can reach
    another tenant's points. Points and queries of another embedding space than the one the
    store was opened with are refused with :class:`EmbeddingMismatchError`.
    """

    space: EmbeddingSpace

    async def open(self) -> None:
        """Create or load the space's collection (dense + keyword vectors, tenant index)."""
        ...

    async def upsert(self, points: Sequence[VectorPoint]) -> None:
        """Insert or overwrite points (ids are deterministic) as one batch."""
        ...

    async def search(self, query: StoreQuery) -> list[Candidate]:
        """The tenant's nearest points by dense vector and by keywords (each up to
        ``query.limit``), merged by point, each with its dense cosine and keyword score."""
        ...

    async def delete(self, tenant_id: str, point_ids: Sequence[str]) -> None:
        """Delete the tenant's points with these ids (others' are untouched)."""
        ...

    async def delete_matching(
        self, tenant_id: str, *, document_id: str | None = None, lead_id: str | None = None
    ) -> None:
        """Delete the tenant's points of a document or of a lead's memory."""
        ...

    async def count(self, tenant_id: str, kinds: Sequence[Kind] = ()) -> int:
        """How many points the tenant has (of these kinds, if given)."""
        ...

    async def close(self) -> None:
        """Flush and release the store."""
        ...


def tenant_scope(
    tenant_id: str,
    kinds: Sequence[str] = (),
    *,
    lead_id: str | None = None,
    document_id: str | None = None,
) -> list[tuple[str, list[str]]]:
    """The one place a store filter is decided: tenant first, always; then narrower fields.

    Adapters translate the ``(field, accepted values)`` pairs into their library's filter.
    """
    if not tenant_id:
        raise ValueError("a store query needs a tenant")
    scope = [("tenant_id", [tenant_id])]
    if kinds:
        scope.append(("kind", list(kinds)))
    if lead_id is not None:
        scope.append(("lead_id", [lead_id]))
    if document_id is not None:
        scope.append(("document_id", [document_id]))
    return scope


def _check_points(space: EmbeddingSpace, points: Sequence[VectorPoint]) -> None:
    for p in points:
        if p.embedding_model != space.model or len(p.vector) != space.dim:
            raise EmbeddingMismatchError(
                f"point {p.item_id} embedded with {p.embedding_model} ({len(p.vector)}-d); "
                f"this index holds {space.model} ({space.dim}-d)"
            )


def _check_query(space: EmbeddingSpace, query: StoreQuery) -> None:
    if query.space != space or len(query.dense) != space.dim:
        raise EmbeddingMismatchError(
            f"query embedded with {query.space.model} ({len(query.dense)}-d); "
            f"this index holds {space.model} ({space.dim}-d)"
        )


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    if not b:
        return 0.0
    x, y = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y) / norm if norm else 0.0


def _merge(
    tenant_id: str,
    query: Sequence[float],
    dense: Sequence[tuple[str, float, dict[str, Any]]],
    keyword: Sequence[tuple[str, float, dict[str, Any], Sequence[float]]],
) -> list[Candidate]:
    """One candidate per point; keyword-only points get their dense cosine from their vector."""
    merged: dict[str, Candidate] = {}
    for pid, score, payload in dense:
        if payload.get("tenant_id") == tenant_id:  # belt and braces
            merged[pid] = Candidate(pid, payload, float(score))
    for pid, score, payload, vector in keyword:
        if payload.get("tenant_id") != tenant_id:
            continue
        seen = merged.get(pid)
        cosine = seen.dense if seen else _cosine(query, vector)
        merged[pid] = Candidate(pid, payload, cosine, float(score))
    return list(merged.values())


# -- qdrant-client: a Qdrant server, or its local mode -----------------------------------------


def _client_filter(scope: list[tuple[str, list[str]]]) -> models.Filter:
    return models.Filter(
        must=[
            models.FieldCondition(key=key, match=models.MatchAny(any=values))
            for key, values in scope
        ]
    )


class QdrantVectorStore:
    """qdrant-client against a Qdrant server (compose, Helm) or its local mode (tests).

    Local mode is brute force and single-process: fine for tests and small tenants only.
    """

    def __init__(self, client: AsyncQdrantClient, base_collection: str, space: EmbeddingSpace):
        self._client = client
        self.space = space
        self.collection = space.collection(base_collection)

    async def open(self) -> None:
        if await self._client.collection_exists(self.collection):
            info = await self._client.get_collection(self.collection)
            vectors = info.config.params.vectors
            size = vectors[DENSE].size if isinstance(vectors, dict) and DENSE in vectors else None
            if size != self.space.dim:
                raise EmbeddingMismatchError(
                    f"collection {self.collection} holds {size}-d vectors, not {self.space.dim}"
                )
            return
        await self._client.create_collection(
            self.collection,
            vectors_config={
                DENSE: models.VectorParams(size=self.space.dim, distance=models.Distance.COSINE)
            },
            sparse_vectors_config={
                KEYWORDS: models.SparseVectorParams(modifier=models.Modifier.IDF)
            },
            # Qdrant's multitenancy recipe: no global graph, one graph per tenant.
            hnsw_config=models.HnswConfigDiff(m=0, payload_m=16),
        )
        with warnings.catch_warnings():
            # Local mode ignores payload indexes (and says so); a server needs them.
            warnings.simplefilter("ignore", UserWarning)
            await self._client.create_payload_index(
                self.collection,
                "tenant_id",
                models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
            )
            for name in INDEXED_FIELDS:
                await self._client.create_payload_index(
                    self.collection, name, models.PayloadSchemaType.KEYWORD
                )

    async def upsert(self, points: Sequence[VectorPoint]) -> None:
        _check_points(self.space, points)
        if not points:
            return
        await self._client.upsert(
            self.collection,
            points=[
                models.PointStruct(
                    id=p.id,
                    vector={
                        DENSE: p.vector,
                        KEYWORDS: models.SparseVector(
                            indices=p.keywords.indices, values=p.keywords.values
                        ),
                    },
                    payload=p.payload(),
                )
                for p in points
            ],
            wait=True,
        )

    async def search(self, query: StoreQuery) -> list[Candidate]:
        _check_query(self.space, query)
        scope = tenant_scope(query.tenant_id, query.kinds, lead_id=query.lead_id)
        tenant_only = _client_filter(tenant_scope(query.tenant_id))
        requests = [
            models.QueryRequest(
                query=list(query.dense),
                using=DENSE,
                filter=_client_filter(scope),
                limit=query.limit,
                with_payload=True,
            )
        ]
        if query.keywords.indices:
            requests.append(
                models.QueryRequest(
                    query=models.SparseVector(
                        indices=query.keywords.indices, values=query.keywords.values
                    ),
                    using=KEYWORDS,
                    filter=_client_filter(scope),
                    limit=query.limit,
                    with_payload=True,
                    with_vector=[DENSE],
                    params=models.SearchParams(idf=models.IdfCorpusParams(corpus=tenant_only)),
                )
            )
        responses = await self._client.query_batch_points(self.collection, requests)
        dense = [(str(p.id), p.score, p.payload or {}) for p in responses[0].points]
        keyword = [
            (str(p.id), p.score, p.payload or {}, _dense_of(p.vector))
            for p in (responses[1].points if len(responses) > 1 else [])
        ]
        return _merge(query.tenant_id, query.dense, dense, keyword)

    async def delete(self, tenant_id: str, point_ids: Sequence[str]) -> None:
        scoped = _client_filter(tenant_scope(tenant_id))
        scoped.must.append(models.HasIdCondition(has_id=list(point_ids)))  # type: ignore[union-attr]
        await self._client.delete(
            self.collection, points_selector=models.FilterSelector(filter=scoped), wait=True
        )

    async def delete_matching(
        self, tenant_id: str, *, document_id: str | None = None, lead_id: str | None = None
    ) -> None:
        if document_id is None and lead_id is None:
            raise ValueError("say which document or lead to delete")
        scope = tenant_scope(tenant_id, lead_id=lead_id, document_id=document_id)
        await self._client.delete(
            self.collection,
            points_selector=models.FilterSelector(filter=_client_filter(scope)),
            wait=True,
        )

    async def count(self, tenant_id: str, kinds: Sequence[Kind] = ()) -> int:
        result = await self._client.count(
            self.collection, count_filter=_client_filter(tenant_scope(tenant_id, kinds)), exact=True
        )
        return result.count

    async def close(self) -> None:
        await self._client.close()


def _dense_of(vector: object) -> list[float]:
    if isinstance(vector, dict):
        value = vector.get(DENSE)
        if isinstance(value, list):
            return [float(x) for x in value]
    return []


# -- Qdrant Edge: the in-process engine --------------------------------------------------------


def _edge_filter(scope: list[tuple[str, list[str]]]) -> edge.Filter:
    return edge.Filter(
        must=[
            edge.FieldCondition(key=key, match=edge.MatchAny(any=values)) for key, values in scope
        ]
    )


class EdgeVectorStore:
    """Qdrant Edge (``qdrant-edge-py``): Qdrant's own engine inside this process, on disk.

    A filtered query touches only the tenant's points through the tenant index, so it stays
    around a millisecond at 100 k points where qdrant-client's local mode takes a second.
    Calls run in a worker thread; writes are serialised (one writer per shard).
    """

    def __init__(self, directory: Path | None, base_collection: str, space: EmbeddingSpace):
        self.space = space
        self.collection = space.collection(base_collection)
        self._temporary = directory is None
        root = Path(tempfile.mkdtemp(prefix="knowledge-edge-")) if directory is None else directory
        self._path = root / self.collection
        self._shard: edge.EdgeShard | None = None
        self._write = asyncio.Lock()

    @property
    def shard(self) -> edge.EdgeShard:
        assert self._shard is not None, "open() first"
        return self._shard

    async def open(self) -> None:
        self._shard = await asyncio.to_thread(self._load_or_create)

    def _load_or_create(self) -> edge.EdgeShard:
        if self._path.exists() and any(self._path.iterdir()):
            shard = edge.EdgeShard.load(str(self._path))
            config_dim = _edge_dim(self._path)
            if config_dim is not None and config_dim != self.space.dim:
                shard.close()
                raise EmbeddingMismatchError(
                    f"{self._path} holds {config_dim}-d vectors, not {self.space.dim}"
                )
            return shard
        self._path.mkdir(parents=True, exist_ok=True)
        config = edge.EdgeConfig(
            vectors={
                DENSE: edge.EdgeVectorParams(size=self.space.dim, distance=edge.Distance.Cosine)
            },
            sparse_vectors={KEYWORDS: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)},
        )
        shard = edge.EdgeShard.create(str(self._path), config)
        shard.update(
            edge.UpdateOperation.create_field_index(
                "tenant_id", edge.KeywordIndexParams(is_tenant=True)
            )
        )
        for name in INDEXED_FIELDS:
            shard.update(
                edge.UpdateOperation.create_field_index(name, edge.PayloadSchemaType.Keyword)
            )
        (self._path / "space.txt").write_text(f"{self.space.model}\n{self.space.dim}\n")
        return shard

    async def upsert(self, points: Sequence[VectorPoint]) -> None:
        _check_points(self.space, points)
        if not points:
            return
        batch = [
            edge.Point(
                id=p.id,
                vector={
                    DENSE: p.vector,
                    KEYWORDS: edge.SparseVector(
                        indices=p.keywords.indices, values=p.keywords.values
                    ),
                },
                payload=p.payload(),
            )
            for p in points
        ]
        async with self._write:
            await asyncio.to_thread(self.shard.update, edge.UpdateOperation.upsert_points(batch))

    async def search(self, query: StoreQuery) -> list[Candidate]:
        _check_query(self.space, query)
        return await asyncio.to_thread(self.search_now, query)

    def search_now(self, query: StoreQuery) -> list[Candidate]:
        """The search without the thread hop (benchmarks measure the engine with it)."""
        _check_query(self.space, query)
        scope = _edge_filter(tenant_scope(query.tenant_id, query.kinds, lead_id=query.lead_id))
        requests = [
            edge.QueryRequest(
                limit=query.limit,
                query=edge.Query.Nearest(list(query.dense), using=DENSE),
                filter=scope,
                with_payload=True,
            )
        ]
        if query.keywords.indices:
            tenant_only = _edge_filter(tenant_scope(query.tenant_id))
            requests.append(
                edge.QueryRequest(
                    limit=query.limit,
                    query=edge.Query.Nearest(
                        edge.SparseVector(
                            indices=query.keywords.indices, values=query.keywords.values
                        ),
                        using=KEYWORDS,
                    ),
                    filter=scope,
                    with_payload=True,
                    with_vector=[DENSE],
                    params=edge.SearchParams(idf=edge.IdfParams(corpus=tenant_only)),
                )
            )
        results = self.shard.query_batch(edge.QueryBatchRequest(requests))
        dense = [(str(p.id), p.score, p.payload or {}) for p in results[0]]
        keyword = [
            (str(p.id), p.score, p.payload or {}, _dense_of(p.vector))
            for p in (results[1] if len(results) > 1 else [])
        ]
        return _merge(query.tenant_id, query.dense, dense, keyword)

    async def delete(self, tenant_id: str, point_ids: Sequence[str]) -> None:
        scoped = edge.Filter(
            must=[
                *[
                    edge.FieldCondition(key=k, match=edge.MatchAny(any=v))
                    for k, v in tenant_scope(tenant_id)
                ],
                edge.HasIdCondition(point_ids=set(point_ids)),
            ]
        )
        async with self._write:
            await asyncio.to_thread(
                self.shard.update, edge.UpdateOperation.delete_points_by_filter(scoped)
            )

    async def delete_matching(
        self, tenant_id: str, *, document_id: str | None = None, lead_id: str | None = None
    ) -> None:
        if document_id is None and lead_id is None:
            raise ValueError("say which document or lead to delete")
        scope = _edge_filter(tenant_scope(tenant_id, lead_id=lead_id, document_id=document_id))
        async with self._write:
            await asyncio.to_thread(
                self.shard.update, edge.UpdateOperation.delete_points_by_filter(scope)
            )

    async def count(self, tenant_id: str, kinds: Sequence[Kind] = ()) -> int:
        request = edge.CountRequest(exact=True, filter=_edge_filter(tenant_scope(tenant_id, kinds)))
        return await asyncio.to_thread(self.shard.count, request)

    async def close(self) -> None:
        if self._shard is None:
            return
        shard, self._shard = self._shard, None
        async with self._write:
            await asyncio.to_thread(shard.flush)
            await asyncio.to_thread(shard.close)
        if self._temporary:
            shutil.rmtree(self._path.parent, ignore_errors=True)


def _edge_dim(path: Path) -> int | None:
    marker = path / "space.txt"
    if not marker.exists():
        return None
    lines = marker.read_text().split("\n")
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None
