"""The vector-store port's contract, run against every adapter: Qdrant Edge (the embedded
default), qdrant-client's local mode, and a Qdrant server through testcontainers where a Docker
daemon answers. Tenant isolation is part of the contract: crafted queries never cross tenants."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient

from taskpilot.knowledge.adapters import EdgeVectorStore, QdrantVectorStore, VectorStore
from taskpilot.knowledge.domain import (
    EmbeddingMismatchError,
    EmbeddingSpace,
    Kind,
    SparseVector,
    StoreQuery,
    VectorPoint,
    document_keywords,
    point_id,
    query_keywords,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")
DIM = 16
SPACE = EmbeddingSpace("test-model", DIM)


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


ADAPTERS = [
    "edge",
    "qdrant-local",
    pytest.param(
        "qdrant-server",
        marks=pytest.mark.skipif(
            not _docker_available(), reason="no Docker daemon: Qdrant server container not started"
        ),
    ),
]


@pytest.fixture(scope="module", params=ADAPTERS)
async def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[VectorStore]:
    """One store per adapter for the module; each test works in its own tenants."""
    if request.param == "edge":
        edge = EdgeVectorStore(tmp_path_factory.mktemp("edge"), "knowledge", SPACE)
        await edge.open()
        yield edge
        await edge.close()
    elif request.param == "qdrant-local":
        local = QdrantVectorStore(AsyncQdrantClient(location=":memory:"), "knowledge", SPACE)
        await local.open()
        yield local
        await local.close()
    else:
        from testcontainers.qdrant import QdrantContainer  # type: ignore[import-untyped]

        with QdrantContainer() as qdrant:
            url = f"http://{qdrant.get_container_host_ip()}:{qdrant.exposed_rest_port}"
            server = QdrantVectorStore(AsyncQdrantClient(url=url), "knowledge", SPACE)
            await server.open()
            yield server
            await server.close()


def vec(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=DIM)
    return (v / np.linalg.norm(v)).tolist()


def point(
    tenant: str,
    item: str,
    vector: list[float],
    kind: Kind = "faq",
    text: str = "",
    **extra: object,
) -> VectorPoint:
    text = text or f"text of {item}"
    return VectorPoint(
        id=point_id(tenant, kind, item),
        item_id=item,
        tenant_id=tenant,
        kind=kind,
        title=f"{tenant}:{item}",
        text=text,
        answer=f"answer {item}",
        embedding_model=SPACE.model,
        embedding_dim=DIM,
        vector=vector,
        keywords=document_keywords(text),
        **extra,  # type: ignore[arg-type]
    )


def query(
    tenant: str,
    vector: list[float],
    text: str = "",
    kinds: tuple[Kind, ...] = ("faq", "chunk"),
    limit: int = 10,
    lead: str | None = None,
) -> StoreQuery:
    return StoreQuery(tenant, SPACE, vector, query_keywords(text), kinds, limit, lead)


async def ids(store: VectorStore, q: StoreQuery) -> list[str]:
    return [str(c.payload["item_id"]) for c in await store.search(q)]


async def test_search_returns_nearest_of_the_tenant_only(store: VectorStore) -> None:
    shared = vec(1)
    await store.upsert(
        [point("a", "a1", shared), point("a", "a2", vec(2)), point("b", "b1", shared)]
    )
    found = sorted(await store.search(query("a", shared)), key=lambda c: -c.dense)
    assert [c.payload["item_id"] for c in found] == ["a1", "a2"]
    assert found[0].dense == pytest.approx(1.0, abs=1e-4)
    assert found[0].payload["embedding_model"] == SPACE.model
    assert found[0].payload["embedding_dim"] == DIM


async def test_keywords_find_exact_terms_and_report_both_scores(store: VectorStore) -> None:
    await store.upsert(
        [
            point("k", "code", vec(10), "chunk", "Order reference SKU-4411 ships in two days"),
            point("k", "other", vec(11), "chunk", "We open at nine on weekdays"),
        ]
    )
    found = {c.payload["item_id"]: c for c in await store.search(query("k", vec(12), "SKU-4411"))}
    assert found["code"].keyword is not None and found["code"].keyword > 0
    assert found["other"].keyword is None  # found by the dense side only
    expected = float(np.dot(vec(10), vec(12)))
    assert found["code"].dense == pytest.approx(expected, abs=1e-3)


async def test_upsert_is_idempotent_and_delete_is_scoped(store: VectorStore) -> None:
    v = vec(3)
    await store.upsert([point("c", "c1", v), point("d", "c1", v)])
    await store.upsert([point("c", "c1", v)])
    assert await store.count("c") == 1
    await store.delete("c", [point_id("d", "faq", "c1")])  # another tenant's id: untouched
    assert await store.count("d") == 1
    await store.delete("c", [point_id("c", "faq", "c1")])
    assert await store.search(query("c", v)) == []


async def test_kind_filter(store: VectorStore) -> None:
    v = vec(4)
    await store.upsert([point("e", "faq1", v), point("e", "chunk1", v, kind="chunk")])
    assert await ids(store, query("e", v, kinds=("chunk",))) == ["chunk1"]
    assert await store.count("e", ["faq"]) == 1


async def test_delete_matching_a_document_or_a_lead(store: VectorStore) -> None:
    v = vec(5)
    await store.upsert(
        [
            point("f", "d1#0", v, "chunk", document_id="d1", position=0),
            point("f", "d1#1", v, "chunk", document_id="d1", position=1),
            point("f", "d2#0", v, "chunk", document_id="d2", position=0),
            point("g", "d1#0", v, "chunk", document_id="d1", position=0),
            point("f", "l1/t1", v, "memory", lead_id="l1"),
            point("f", "l2/t1", v, "memory", lead_id="l2"),
        ]
    )
    await store.delete_matching("f", document_id="d1")
    assert sorted(await ids(store, query("f", v, kinds=("chunk",)))) == ["d2#0"]
    assert await store.count("g") == 1  # same document id, other tenant: untouched
    await store.delete_matching("f", lead_id="l1")
    assert await ids(store, query("f", v, kinds=("memory",), lead="l2")) == ["l2/t1"]
    assert await ids(store, query("f", v, kinds=("memory",), lead="l1")) == []


async def test_memory_is_scoped_to_its_lead(store: VectorStore) -> None:
    v = vec(6)
    await store.upsert(
        [
            point("h", "l1/t", v, "memory", lead_id="l1"),
            point("h", "l2/t", v, "memory", lead_id="l2"),
        ]
    )
    assert await ids(store, query("h", v, "text", kinds=("memory",), lead="l1")) == ["l1/t"]


async def test_points_and_queries_of_another_model_are_refused(store: VectorStore) -> None:
    stranger = point("i", "x", vec(7)).model_copy(update={"embedding_model": "other-model"})
    with pytest.raises(EmbeddingMismatchError):
        await store.upsert([stranger])
    short = point("i", "y", vec(7)).model_copy(update={"vector": vec(7)[:8]})
    with pytest.raises(EmbeddingMismatchError):
        await store.upsert([short])
    other_space = StoreQuery(
        "i", EmbeddingSpace("other-model", DIM), vec(7), SparseVector(), ("faq",), 3
    )
    with pytest.raises(EmbeddingMismatchError):
        await store.search(other_space)
    assert await store.count("i") == 0


async def test_no_crafted_query_returns_another_tenants_point(store: VectorStore) -> None:
    secrets = [
        point("victim", f"s{i}", vec(100 + i), "chunk", f"secret code ZX{i}9 password vault")
        for i in range(10)
    ]
    await store.upsert([*secrets, point("attacker", "own", vec(99), "chunk", "hello")])
    crafted = [
        query("attacker", p.vector, p.text, kinds=("faq", "chunk", "memory"), limit=50)
        for p in secrets
    ]
    crafted += [query("attacker", vec(seed), "secret vault ZX09", limit=50) for seed in range(20)]
    crafted += [query("attacker", vec(1), "password", lead="victim")]
    for q in crafted:
        for candidate in await store.search(q):
            assert candidate.payload["tenant_id"] == "attacker"
    for lookalike in ("*", "victim*", "VICTIM", "victim "):
        assert await store.search(query(lookalike, vec(1), "secret")) == []
    with pytest.raises(ValueError, match="tenant"):
        await store.search(query("", vec(1), "secret"))


async def test_the_embedded_store_keeps_its_points_across_restarts(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    directory = tmp_path_factory.mktemp("restart")
    first = EdgeVectorStore(directory, "knowledge", SPACE)
    await first.open()
    await first.upsert([point("r", "r1", vec(8), "chunk", "kept across restarts")])
    await first.close()

    again = EdgeVectorStore(directory, "knowledge", SPACE)
    await again.open()
    try:
        assert await ids(again, query("r", vec(8), "restarts")) == ["r1"]
    finally:
        await again.close()
    # another model gets its own collection beside it; a changed dimension is refused
    other = EdgeVectorStore(directory, "knowledge", EmbeddingSpace("other-model", DIM))
    await other.open()
    assert await other.count("r") == 0
    await other.close()
    (directory / SPACE.collection("knowledge") / "space.txt").write_text(f"{SPACE.model}\n32\n")
    wrong = EdgeVectorStore(directory, "knowledge", SPACE)
    with pytest.raises(EmbeddingMismatchError):
        await wrong.open()
