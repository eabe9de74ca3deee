"""Knowledge wired for tests: real PostgreSQL, real NATS, the embedded vector store, the real
embedder; its HTTP API through an in-process ASGI client (with an operator's token, each test
using its own tenants) and its responders on the bus."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from nats.aio.msg import Msg
from psycopg_pool import AsyncConnectionPool

from taskpilot.contracts import subjects
from taskpilot.contracts.knowledge import KnowledgeUpdated
from taskpilot.embeddings import Embedder, Vectors, default_embedder
from taskpilot.knowledge import handlers
from taskpilot.knowledge.adapters import EdgeVectorStore
from taskpilot.knowledge.api import knowledge_router
from taskpilot.knowledge.domain import EmbeddingSpace, HybridPolicy
from taskpilot.knowledge.repository import SCHEMA, KnowledgeRepository
from taskpilot.knowledge.service import KnowledgeService, Retriever
from taskpilot.runtime.auth import Guard, add_auth_errors
from taskpilot.runtime.bus import Bus, ensure_streams
from taskpilot.runtime.db import migrate, open_pool
from taskpilot.runtime.servers import NatsServer
from taskpilot.runtime.testing.tokens import operator
from taskpilot.tenancy.api_keys import ApiKeyStore
from taskpilot.tenancy.tokens import LocalIssuer, TokenVerifier


class HashingEmbedder:
    """A tiny deterministic bag-of-words embedder: another model, for re-index tests."""

    def __init__(self, name: str = "test/hashing-64", dim: int = 64):
        self.name = name
        self.dim = dim

    def _encode(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "big") % self.dim] += 1.0
            out[row] /= max(float(np.linalg.norm(out[row])), 1e-6)
        return out

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self._encode(texts)

    def embed_passages(self, texts: Sequence[str]) -> Vectors:
        return self._encode(texts)


@pytest.fixture(scope="session")
async def knowledge_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(database_url, max_size=6)
    await migrate(pool, "taskpilot.knowledge", SCHEMA)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def knowledge_bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    bus = Bus(nats_server.url, name=f"knowledge-test-{uuid.uuid4().hex[:6]}")
    await bus.connect()
    await ensure_streams(bus.js)
    yield bus
    await bus.close()


@dataclass
class Knowledge:
    service: KnowledgeService
    store: EdgeVectorStore
    http: httpx.AsyncClient
    bus: Bus
    embedder: Embedder

    @staticmethod
    def tenant() -> str:
        return f"t{uuid.uuid4().hex[:10]}"


def build(
    pool: AsyncConnectionPool, bus: Bus, store: EdgeVectorStore, embedder: Embedder, **kw: int
) -> KnowledgeService:
    return KnowledgeService(
        KnowledgeRepository(pool, embedder.name),
        Retriever(store, embedder, HybridPolicy()),
        bus,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
async def knowledge(
    knowledge_pool: AsyncConnectionPool,
    knowledge_bus: Bus,
    tmp_path_factory: pytest.TempPathFactory,
    token_issuer: LocalIssuer,
) -> AsyncIterator[Knowledge]:
    """One knowledge service for the session; each test uses its own tenants."""
    embedder = default_embedder()
    store = EdgeVectorStore(
        Path(tmp_path_factory.mktemp("edge")),
        "knowledge",
        EmbeddingSpace(embedder.name, embedder.dim),
    )
    await store.open()
    service = build(knowledge_pool, knowledge_bus, store, embedder, max_upload_bytes=256 * 1024)
    responders = Bus(knowledge_bus.url, name="knowledge-responders")
    await responders.connect()
    handlers.register(responders, service)
    await responders.start()
    api_keys = ApiKeyStore(knowledge_pool)
    await api_keys.ensure_schema()
    app = FastAPI()
    add_auth_errors(app)
    app.include_router(
        knowledge_router(service, Guard(TokenVerifier(local=token_issuer, api_keys=api_keys)))
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://knowledge",
        timeout=30,
        headers=operator(token_issuer),
    ) as http:
        yield Knowledge(service, store, http, knowledge_bus, embedder)
    await service.wait_for_jobs()
    await responders.close()
    await store.close()


class Announcements:
    """KnowledgeUpdated events of one tenant, captured from the bus as they are published."""

    def __init__(self) -> None:
        self.events: list[KnowledgeUpdated] = []

    async def record(self, msg: Msg) -> None:
        self.events.append(KnowledgeUpdated.model_validate_json(msg.data))

    @property
    def versions(self) -> list[int]:
        return [e.version for e in self.events]


@pytest.fixture
async def announcements(knowledge: Knowledge) -> AsyncIterator[tuple[str, Announcements]]:
    tenant = knowledge.tenant()
    seen = Announcements()
    sub = await knowledge.bus.nc.subscribe(
        subjects.KNOWLEDGE_UPDATED.subject(tenant=tenant), cb=seen.record
    )
    yield tenant, seen
    await sub.unsubscribe()
