"""The vector-store port's contract, run against every adapter (Qdrant local mode here; a Qdrant
server through testcontainers where Docker exists)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient

from taskpilot.knowledge.adapters import QdrantVectorStore, VectorStore
from taskpilot.knowledge.domain import VectorPoint, point_id

pytestmark = pytest.mark.asyncio(loop_scope="session")
DIM = 16


def _docker_available() -> bool:
    return shutil.which("docker") is not None and _docker_daemon_answers()


def _docker_daemon_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


ADAPTERS = [
    "qdrant-local",
    pytest.param(
        "qdrant-server",
        marks=pytest.mark.skipif(
            not _docker_available(), reason="no Docker daemon: Qdrant server container not started"
        ),
    ),
]


@pytest.fixture(params=ADAPTERS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[VectorStore]:
    if request.param == "qdrant-local":
        client = AsyncQdrantClient(location=":memory:")
        yield await _ready(QdrantVectorStore(client, "knowledge"))
        await client.close()
    else:
        from testcontainers.qdrant import QdrantContainer  # type: ignore[import-untyped]

        with QdrantContainer() as qdrant:
            client = AsyncQdrantClient(
                url=f"http://{qdrant.get_container_host_ip()}:{qdrant.exposed_rest_port}"
            )
            yield await _ready(QdrantVectorStore(client, "knowledge"))
            await client.close()


async def _ready(store: QdrantVectorStore) -> QdrantVectorStore:
    await store.ensure_collection(DIM)
    return store


def vec(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=DIM)
    return (v / np.linalg.norm(v)).tolist()


def point(tenant: str, item: str, vector: list[float], kind: str = "faq") -> VectorPoint:
    return VectorPoint(
        id=point_id(tenant, kind, item),
        item_id=item,
        tenant_id=tenant,
        kind=kind,
        title=f"{tenant}:{item}",
        text=f"text of {item}",
        answer=f"answer {item}",
        embedding_model="test",
        vector=vector,
    )


async def test_search_returns_nearest_of_the_tenant_only(store: VectorStore) -> None:
    shared = vec(1)
    await store.upsert(
        [point("a", "a1", shared), point("a", "a2", vec(2)), point("b", "b1", shared)]
    )
    hits = await store.search("a", shared, top_k=10, kinds=["faq"])
    assert next(h.id for h in hits) == "a1"
    assert {h.id for h in hits} == {"a1", "a2"}
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    # The other tenant's identical vector is never returned, whatever the query.
    for seed in range(20):
        assert all(h.id.startswith("b") for h in await store.search("b", vec(seed), 10, ["faq"]))


async def test_upsert_is_idempotent_and_delete_is_scoped(store: VectorStore) -> None:
    v = vec(3)
    await store.upsert([point("c", "c1", v), point("d", "c1", v)])
    await store.upsert([point("c", "c1", v)])
    assert len(await store.search("c", v, 10, ["faq"])) == 1
    await store.delete("c", [point_id("d", "faq", "c1")])  # another tenant's id: untouched
    assert len(await store.search("d", v, 10, ["faq"])) == 1
    await store.delete("c", [point_id("c", "faq", "c1")])
    assert await store.search("c", v, 10, ["faq"]) == []


async def test_kind_filter(store: VectorStore) -> None:
    v = vec(4)
    await store.upsert([point("e", "faq1", v), point("e", "chunk1", v, kind="chunk")])
    assert [h.kind for h in await store.search("e", v, 10, ["chunk"])] == ["chunk"]
