"""The cache store and spend ledger ports, against every adapter: in-process memory and the
JetStream key-value buckets (a real nats-server) that replicas share."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import numpy as np
import pytest

from taskpilot.inference.adapters.cache_store import CacheStore, KvCacheStore, MemoryCacheStore
from taskpilot.inference.adapters.spend import KvSpendLedger, MemorySpendLedger, SpendLedger
from taskpilot.inference.domain.cache import CachedAnswer, CacheScope, entry_id, signature
from taskpilot.runtime.servers import NatsServer
from taskpilot.runtime.testing import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOW = 1_800_000_000.0
SCOPE = CacheScope("t-aurora", 3, "p1-test", "en")


def vector(*hot: int) -> np.ndarray:
    v = np.zeros(8, dtype=np.float32)
    for i in hot:
        v[i] = 1.0
    return v / np.linalg.norm(v)


def entry(question: str, v: np.ndarray, scope: CacheScope = SCOPE, ttl: float = 60.0):
    return CachedAnswer(
        id=entry_id(scope, question),
        scope=scope,
        question=question,
        vector=tuple(float(x) for x in v),
        signature=signature(question, "pricing"),
        text=f"answer to {question}",
        tier="L2",
        model="openai/cheap",
        citations=({"id": "faq-1", "kind": "faq", "title": "Prices", "score": 0.9},),
        created_at=NOW,
        expires_at=NOW + ttl,
    )


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[nats.js.JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream()
    await nc.drain()


@pytest.fixture(params=["memory", "kv"])
async def store(request: pytest.FixtureRequest, js) -> AsyncIterator[CacheStore]:
    if request.param == "memory":
        memory = MemoryCacheStore()
        yield memory
        await memory.close()
        return
    kv = await KvCacheStore.open(js, f"cache_{uuid.uuid4().hex[:8]}", ttl_s=600)
    yield kv
    await kv.close()


async def lookup(store: CacheStore, question: str, v: np.ndarray, scope: CacheScope = SCOPE):
    return await store.lookup(scope, v, signature(question, "pricing"), 0.9, NOW)


async def test_a_stored_answer_serves_the_same_question(store: CacheStore) -> None:
    await store.put(entry("how much is a haircut", vector(0)))

    found = await lookup(store, "how much is a haircut", vector(0))

    assert found is not None
    assert found[0].text == "answer to how much is a haircut"
    assert found[1] == pytest.approx(1.0)
    assert found[0].citations[0]["id"] == "faq-1"


async def test_a_distant_question_misses(store: CacheStore) -> None:
    await store.put(entry("how much is a haircut", vector(0)))

    assert await lookup(store, "how much is a haircut", vector(1)) is None


async def test_a_close_question_with_another_number_misses(store: CacheStore) -> None:
    await store.put(entry("how much for 2 haircuts", vector(0)))

    assert await lookup(store, "how much for 3 haircuts", vector(0)) is None


@pytest.mark.parametrize(
    "other",
    [
        CacheScope("t-rayo", 3, "p1-test", "en"),
        CacheScope("t-aurora", 4, "p1-test", "en"),
        CacheScope("t-aurora", 3, "p2-test", "en"),
        CacheScope("t-aurora", 3, "p1-test", "es"),
    ],
    ids=["tenant", "knowledge-version", "prompt-version", "language"],
)
async def test_nothing_is_shared_across_scopes(store: CacheStore, other: CacheScope) -> None:
    await store.put(entry("how much is a haircut", vector(0)))

    assert await lookup(store, "how much is a haircut", vector(0), other) is None


async def test_an_expired_entry_is_never_served(store: CacheStore) -> None:
    await store.put(entry("how much is a haircut", vector(0), ttl=-1.0))

    assert await lookup(store, "how much is a haircut", vector(0)) is None


async def test_a_knowledge_update_drops_the_older_versions_of_that_tenant(
    store: CacheStore,
) -> None:
    other_tenant = CacheScope("t-rayo", 1, "p1-test", "en")
    await store.put(entry("how much is a haircut", vector(0)))
    await store.put(entry("how much is a haircut", vector(0), other_tenant))

    assert await store.drop_before("t-aurora", 4) == 1

    assert await lookup(store, "how much is a haircut", vector(0)) is None
    assert await lookup(store, "how much is a haircut", vector(0), other_tenant) is not None


async def test_putting_the_same_question_again_replaces_it(store: CacheStore) -> None:
    first = entry("how much is a haircut", vector(0))
    await store.put(first)
    await store.put(CachedAnswer(**{**first.__dict__, "text": "newer"}))

    found = await lookup(store, "how much is a haircut", vector(0))

    assert found is not None and found[0].text == "newer"


# -- what only the shared bucket does ---------------------------------------------------------


async def test_the_last_put_always_wins_over_earlier_echoes(store: CacheStore) -> None:
    for n in range(30):
        first = entry(f"question {n}", vector(n % 4))
        await store.put(first)
        await store.put(CachedAnswer(**{**first.__dict__, "text": f"newer {n}"}))
        found = await lookup(store, f"question {n}", vector(n % 4))
        assert found is not None and found[0].text == f"newer {n}", n


async def test_an_answer_stored_by_one_replica_serves_another(js) -> None:
    bucket = f"cache_{uuid.uuid4().hex[:8]}"
    one = await KvCacheStore.open(js, bucket, ttl_s=600)
    two = await KvCacheStore.open(js, bucket, ttl_s=600)
    try:
        await one.put(entry("how much is a haircut", vector(0)))

        found = await eventually(
            lambda: lookup(two, "how much is a haircut", vector(0)), what="replica two sees it"
        )
        assert found[0].model == "openai/cheap"

        await one.drop_before("t-aurora", 9)
        await eventually(lambda: _gone(two), what="replica two forgets it")
    finally:
        await one.close()
        await two.close()


async def _gone(store: KvCacheStore) -> bool:
    return await lookup(store, "how much is a haircut", vector(0)) is None


async def test_a_restarted_replica_loads_what_was_stored(js) -> None:
    bucket = f"cache_{uuid.uuid4().hex[:8]}"
    first = await KvCacheStore.open(js, bucket, ttl_s=600)
    await first.put(entry("how much is a haircut", vector(0)))
    await first.put(entry("where are you", vector(1)))
    await first.close()

    restarted = await KvCacheStore.open(js, bucket, ttl_s=600)
    try:
        assert len(restarted) == 2
        assert await lookup(restarted, "where are you", vector(1)) is not None
    finally:
        await restarted.close()


# -- spend ledger ---------------------------------------------------------------------------


@pytest.fixture(params=["memory", "kv"])
async def ledger(request: pytest.FixtureRequest, js) -> SpendLedger:
    if request.param == "memory":
        return MemorySpendLedger()
    return await KvSpendLedger.open(js, f"spend_{uuid.uuid4().hex[:8]}")


async def test_spend_adds_up_per_tenant_and_month(ledger: SpendLedger) -> None:
    assert (await ledger.spent("t-aurora", "2026-11")).usd == 0.0

    first = await ledger.add("t-aurora", "2026-11", 0.25, 1000)
    second = await ledger.add("t-aurora", "2026-11", 0.5, 500)
    await ledger.add("t-rayo", "2026-11", 9.0, 1)
    await ledger.add("t-aurora", "2026-12", 7.0, 1)

    assert (first[0].usd, first[1].usd) == (0.0, 0.25)
    assert (second[0].usd, second[1].usd) == (0.25, 0.75)
    total = await ledger.spent("t-aurora", "2026-11")
    assert (total.usd, total.tokens) == (0.75, 1500)


async def test_concurrent_additions_are_never_lost_and_each_sees_a_distinct_total(
    ledger: SpendLedger,
) -> None:
    results = await asyncio.gather(*(ledger.add("t-aurora", "2026-11", 1.0, 1) for _ in range(20)))

    assert (await ledger.spent("t-aurora", "2026-11")).usd == 20.0
    assert sorted(after.usd for _, after in results) == [float(n) for n in range(1, 21)]


async def test_expired_entries_are_forgotten_when_their_scope_gets_a_new_one(
    store: CacheStore,
) -> None:
    await store.put(entry("how much is a haircut", vector(0), ttl=-1.0))
    await store.put(entry("where are you", vector(1)))

    assert len(store) == 1  # type: ignore[arg-type]
