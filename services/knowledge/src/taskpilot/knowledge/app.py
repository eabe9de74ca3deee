"""Composition root of knowledge."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from qdrant_client import AsyncQdrantClient

from taskpilot.embeddings import default_embedder
from taskpilot.knowledge import handlers
from taskpilot.knowledge.adapters import SCHEMA, KnowledgeRepository, QdrantVectorStore
from taskpilot.knowledge.api import knowledge_router
from taskpilot.knowledge.service import KnowledgeService
from taskpilot.knowledge.settings import KnowledgeSettings
from taskpilot.runtime.bootstrap import connect
from taskpilot.runtime.db import migrate
from taskpilot.runtime.host import ServiceApp
from taskpilot.runtime.ops import add_ops_routes


def qdrant_client(settings: KnowledgeSettings) -> AsyncQdrantClient:
    if settings.qdrant_url:
        return AsyncQdrantClient(url=settings.qdrant_url)
    path = settings.qdrant_path or str(settings.data_dir / "qdrant")
    if path == ":memory:":
        return AsyncQdrantClient(location=":memory:")
    return AsyncQdrantClient(path=path)


async def create(settings: KnowledgeSettings) -> ServiceApp:
    res = await connect(settings, "knowledge")
    await migrate(res.pool, "taskpilot.knowledge", SCHEMA)
    embedder = await asyncio.to_thread(default_embedder)
    client = qdrant_client(settings)
    store = QdrantVectorStore(client, settings.collection)
    await store.ensure_collection(embedder.dim)
    service = KnowledgeService(KnowledgeRepository(res.pool), store, embedder, res.bus)
    handlers.register(res.bus, service)
    http = FastAPI(title="TaskPilot knowledge", version="0.1.0")
    http.include_router(knowledge_router(service))
    add_ops_routes(http, "knowledge", res.readiness())
    return ServiceApp(
        "knowledge",
        res.bus,
        http,
        settings.http_host,
        settings.http_port,
        on_stop=[client.close, res.close],
    )
