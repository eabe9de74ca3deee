"""Knowledge through its public surfaces: FAQ versions, request-reply search as inference does
it, lead memory (remember, recall, erase), re-indexing when the embedding model changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from taskpilot.contracts.knowledge import (
    EraseLeadMemory,
    KnowledgeSearchResult,
    MemoryResult,
    RecallMemory,
    RememberTurn,
    SearchKnowledge,
)
from taskpilot.knowledge.adapters import EdgeVectorStore
from taskpilot.knowledge.domain import DocumentIn, EmbeddingSpace, MemoryTurn
from taskpilot.knowledge.repository import SCHEMA
from taskpilot.runtime.db import migrate, open_pool
from taskpilot.runtime.testing import eventually
from tests.integration.knowledge.conftest import (
    Announcements,
    HashingEmbedder,
    Knowledge,
    build,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _true(value: bool) -> bool:
    return value


async def test_every_faq_change_bumps_and_announces_the_version(
    knowledge: Knowledge, announcements: tuple[str, Announcements]
) -> None:
    tenant, seen = announcements
    faqs = f"/v1/tenants/{tenant}/faqs"
    created = (await knowledge.http.post(faqs, json={"question": "Q1?", "answer": "A1"})).json()
    updated = await knowledge.http.put(
        f"{faqs}/{created['id']}", json={"question": "Q1 again?", "answer": "A2"}
    )
    assert updated.status_code == 200
    assert (await knowledge.http.delete(f"{faqs}/{created['id']}")).status_code == 204
    await eventually(lambda: _true(seen.versions == [1, 2, 3]), what="three versions")
    assert [e.change for e in seen.events] == ["faq_created", "faq_updated", "faq_deleted"]
    assert all(e.item_id == created["id"] for e in seen.events)


async def test_search_over_the_bus_with_the_callers_vector(knowledge: Knowledge) -> None:
    """As inference asks: its own query vector, same model; old readers see the old fields."""
    tenant = knowledge.tenant()
    question = "What are your opening hours?"
    await knowledge.http.post(
        f"/v1/tenants/{tenant}/faqs",
        json={"question": question, "answer": "Monday to Friday 9:00-19:00."},
    )
    [vector] = knowledge.embedder.embed_queries(["when do you open?"])
    request = SearchKnowledge(
        tenant_id=tenant,
        correlation_id="wamid.test",
        query="when do you open?",
        vector=vector.tolist(),
        embedding_model=knowledge.embedder.name,
        top_k=3,
    )
    result = await knowledge.bus.request(request, KnowledgeSearchResult, timeout=10)
    assert result.error is None and result.knowledge_version == 1
    [hit] = result.hits
    assert hit.kind == "faq" and hit.answer == "Monday to Friday 9:00-19:00."
    assert hit.score > 0.9  # the dense cosine inference thresholds on
    assert hit.rank_score is not None

    wrong_model = request.model_copy(update={"embedding_model": "someone-elses-model"})
    refused = await knowledge.bus.request(wrong_model, KnowledgeSearchResult, timeout=10)
    assert refused.hits == [] and "index uses" in str(refused.error)


async def test_a_lead_remembers_its_own_turns_until_erased(knowledge: Knowledge) -> None:
    tenant = knowledge.tenant()
    turns = [
        ("34600000001", "t1", "I'd like balayage but I'm allergic to ammonia", "Noted, we use..."),
        ("34600000001", "t2", "My name is Lucía and I prefer Fridays", "Thanks Lucía!"),
        ("34600000002", "t1", "Do you fix bikes?", "No, we are a hair salon."),
    ]
    for lead, turn_id, lead_text, reply in turns:
        stored = await knowledge.bus.request(
            RememberTurn(
                tenant_id=tenant,
                correlation_id=turn_id,
                lead=lead,
                turn_id=turn_id,
                lead_text=lead_text,
                reply_text=reply,
            ),
            MemoryResult,
            timeout=10,
        )
        assert stored.stored == 1
    recall = RecallMemory(
        tenant_id=tenant, correlation_id="r", lead="34600000001", query="which day suits her?"
    )
    result = await knowledge.bus.request(recall, MemoryResult, timeout=10)
    assert result.hits[0].turn_id == "t2" and "Fridays" in result.hits[0].lead_text
    everything = recall.model_copy(update={"min_score": 0.0, "top_k": 10})
    result = await knowledge.bus.request(everything, MemoryResult, timeout=10)
    assert {h.turn_id for h in result.hits} == {"t1", "t2"}  # never the other lead's turn
    other = await knowledge.http.post(
        f"/v1/tenants/{tenant}/leads/34600000002/memory/search", json={"query": "bikes"}
    )
    assert [h["lead_text"] for h in other.json()] == ["Do you fix bikes?"]

    erase = EraseLeadMemory(tenant_id=tenant, correlation_id="gdpr", lead="34600000001")
    assert (await knowledge.bus.request(erase, MemoryResult, timeout=10)).erased == 2
    assert (await knowledge.bus.request(recall, MemoryResult, timeout=10)).hits == []
    assert await knowledge.store.count(tenant, ["memory"]) == 1
    http_erase = await knowledge.http.delete(f"/v1/tenants/{tenant}/leads/34600000002/memory")
    assert http_erase.json() == {"erased": 1}
    assert await knowledge.store.count(tenant) == 0


async def test_turns_remembered_together_land_each_in_its_own_tenant(knowledge: Knowledge) -> None:
    """Concurrent requests are stored in batches that mix tenants: every turn is stored once,
    under its own tenant and lead, and recalled only there."""
    tenants = [knowledge.tenant(), knowledge.tenant()]
    requests = [
        RememberTurn(
            tenant_id=tenants[n % 2],
            correlation_id=f"c{n}",
            lead=f"3460000{n % 3:04d}",
            turn_id=f"t{n}",
            lead_text=f"turn {n}: I would like an appointment on day {n}",
            reply_text=f"noted {n}",
        )
        for n in range(24)
    ]
    batcher = knowledge.service._remembering
    calls_before = batcher.calls
    answers = await asyncio.gather(
        *(knowledge.bus.request(r, MemoryResult, timeout=20) for r in requests)
    )

    assert [a.stored for a in answers] == [1] * 24
    assert batcher.calls - calls_before < 24  # some went together
    for n, tenant in enumerate(tenants):
        assert await knowledge.store.count(tenant, ["memory"]) == 12
        mine = {r.turn_id for r in requests if r.tenant_id == tenant and r.lead == "34600000001"}
        recall = RecallMemory(
            tenant_id=tenant,
            correlation_id="r",
            lead="34600000001",
            query="appointment",
            top_k=20,
            min_score=0.0,
        )
        result = await knowledge.bus.request(recall, MemoryResult, timeout=10)
        assert {h.turn_id for h in result.hits} == mine, n


async def test_retention_forgets_only_what_was_remembered_before_its_cutoff(
    knowledge: Knowledge,
) -> None:
    tenant, lead = knowledge.tenant(), "34600000003"

    async def remember(turn_id: str, text: str) -> None:
        turn = RememberTurn(
            tenant_id=tenant, correlation_id=turn_id, lead=lead, turn_id=turn_id, lead_text=text
        )
        assert (await knowledge.bus.request(turn, MemoryResult, timeout=10)).stored == 1

    await remember("old", "My old address is Calle Mayor 1")
    cutoff = datetime.now(UTC)
    await remember("new", "Please book me for Friday")

    forget = EraseLeadMemory(tenant_id=tenant, correlation_id="retention", lead=lead, before=cutoff)
    assert (await knowledge.bus.request(forget, MemoryResult, timeout=10)).erased == 1
    assert (await knowledge.bus.request(forget, MemoryResult, timeout=10)).erased == 0

    recall = RecallMemory(
        tenant_id=tenant, correlation_id="r", lead=lead, query="address", min_score=0.0, top_k=10
    )
    hits = (await knowledge.bus.request(recall, MemoryResult, timeout=10)).hits
    assert [h.turn_id for h in hits] == ["new"]
    assert await knowledge.store.count(tenant, ["memory"]) == 1


async def test_a_new_embedding_model_reindexes_every_tenant(
    knowledge: Knowledge,
    fresh_database_url: str,
    tmp_path: Path,
    announcements: tuple[str, Announcements],
) -> None:
    tenant, seen = announcements
    other = knowledge.tenant()
    pool = await open_pool(fresh_database_url, max_size=3)  # its own registry of tenants
    await migrate(pool, "taskpilot.knowledge", SCHEMA)
    new_model = HashingEmbedder()
    new_store = EdgeVectorStore(
        tmp_path, "knowledge", EmbeddingSpace(new_model.name, new_model.dim)
    )
    try:
        current = build(pool, knowledge.bus, knowledge.store, knowledge.embedder)
        await current.add_faq(tenant, "Do you sell gift cards?", "Yes, from 20 euros.")
        await current.add_faq(other, "Do you open on Sundays?", "No.")
        await current.start_upload(
            tenant,
            DocumentIn(
                filename="hours.md", data=b"# Hours\n\nWe open at nine and close at seven.\n"
            ),
        )
        await current.wait_for_jobs()
        await current.remember(
            MemoryTurn(
                tenant_id=tenant, lead_id="l1", turn_id="t1", lead_text="hi", reply_text="hey"
            )
        )
        assert await current.reindex_stale_tenants() == []  # same model: nothing to do

        await new_store.open()
        assert new_store.collection != knowledge.store.collection  # a new model, a new index
        upgraded = build(pool, knowledge.bus, new_store, new_model)
        assert await upgraded.reindex_stale_tenants() == sorted([tenant, other])
        assert await new_store.count(tenant) == 3  # FAQ, chunk, memory
        assert await new_store.count(other) == 1
        result = await upgraded.search(
            SearchKnowledge(
                tenant_id=tenant, correlation_id="c", query="gift cards", top_k=1, min_score=0
            )
        )
        assert result.embedding_model == new_model.name and result.hits[0].kind == "faq"
        assert await upgraded.reindex_stale_tenants() == []  # done once
        await eventually(
            lambda: _true(seen.events[-1:] != [] and seen.events[-1].change == "reindexed"),
            what="reindexed announced",
        )
    finally:
        await new_store.close()
        await pool.close()
