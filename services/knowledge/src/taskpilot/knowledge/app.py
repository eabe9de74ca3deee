"""Composition root of knowledge."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI
from qdrant_client import AsyncQdrantClient

from taskpilot.embeddings import default_embedder
from taskpilot.knowledge import handlers
from taskpilot.knowledge.adapters import EdgeVectorStore, QdrantVectorStore, VectorStore
from taskpilot.knowledge.api import knowledge_router
from taskpilot.knowledge.domain import EmbeddingSpace
from taskpilot.knowledge.repository import SCHEMA, KnowledgeRepository
from taskpilot.knowledge.service import KnowledgeService, Retriever
from taskpilot.knowledge.settings import KnowledgeSettings
from taskpilot.runtime.auth import Guard, add_auth_errors, verifier_for
from taskpilot.runtime.bootstrap import connect
from taskpilot.runtime.db import migrate
from taskpilot.runtime.host import ServiceApp
from taskpilot.runtime.http_errors import add_input_errors
from taskpilot.runtime.ops import add_ops_routes


def vector_store(settings: KnowledgeSettings, space: EmbeddingSpace) -> VectorStore:
    """A Qdrant server when QDRANT_URL is set; else the embedded store on disk."""
    if settings.qdrant_url:
        return QdrantVectorStore(
            AsyncQdrantClient(url=settings.qdrant_url), settings.collection, space
        )
    path = settings.qdrant_path or str(settings.data_dir / "qdrant")
    if settings.vector_store == "qdrant-local":
        client = (
            AsyncQdrantClient(location=":memory:")
            if path == ":memory:"
            else AsyncQdrantClient(path=path)
        )
        return QdrantVectorStore(client, settings.collection, space)
    return EdgeVectorStore(None if path == ":memory:" else Path(path), settings.collection, space)


async def create(settings: KnowledgeSettings) -> ServiceApp:
    res = await connect(settings, "knowledge")
    await migrate(res.pool, "taskpilot.knowledge", SCHEMA)
    embedder = await asyncio.to_thread(default_embedder)
    store = vector_store(settings, EmbeddingSpace(embedder.name, embedder.dim))
    await store.open()
    service = KnowledgeService(
        KnowledgeRepository(res.pool, embedder.name),
        Retriever(store, embedder, settings.hybrid_policy()),
        res.bus,
        max_upload_bytes=int(settings.max_upload_mb * 1024 * 1024),
        max_chunks=settings.max_chunks,
        limits=settings.chunk_limits(),
        job_lease_s=settings.job_lease_s,
        job_sweep_s=settings.job_sweep_s,
        embed_batch=settings.embed_batch,
    )
    handlers.register(res.bus, service, search_workers=settings.search_workers)
    guard = Guard(await verifier_for(settings, res.pool))
    http = FastAPI(title="TaskPilot knowledge", version="0.2.0")
    add_auth_errors(http)
    add_input_errors(http)
    http.include_router(knowledge_router(service, guard))
    add_ops_routes(http, "knowledge", res.readiness())

    async def reindex_stale_tenants() -> None:
        await service.reindex_stale_tenants()

    return ServiceApp(
        "knowledge",
        res.bus,
        http,
        settings.http_host,
        settings.http_port,
        background=[
            service.indexing.run_forever,
            *([reindex_stale_tenants] if settings.reindex_on_start else []),
        ],
        # Running jobs stop with their progress saved and their claims released: another
        # replica (or this one, restarted) resumes them.
        on_stop=[service.indexing.stop, store.close, res.close],
    )
