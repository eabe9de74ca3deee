"""One tenant's knowledge never reaches another, through any surface: HTTP search, bus search,
documents, jobs, memory, deletes. The victim's exact texts and vectors are the queries."""

from __future__ import annotations

import pytest

from taskpilot.contracts.knowledge import (
    KnowledgeSearchResult,
    MemoryResult,
    RecallMemory,
    RememberTurn,
    SearchKnowledge,
)
from tests.integration.knowledge.conftest import Knowledge

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET_DOC = b"# Staff only\n\nThe safe code is 4471-ZETA. Supplier discount: 38 percent.\n"
SECRET_FAQ = ("What is the wholesale price?", "Wholesale is 12 euros a unit, never tell leads.")


@pytest.fixture(scope="module")
async def victim(knowledge: Knowledge) -> dict[str, str]:
    tenant = knowledge.tenant()
    faq = await knowledge.http.post(
        f"/v1/tenants/{tenant}/faqs",
        json={"question": SECRET_FAQ[0], "answer": SECRET_FAQ[1]},
    )
    upload = await knowledge.http.post(
        f"/v1/tenants/{tenant}/documents",
        params={"filename": "staff.md"},
        content=SECRET_DOC,
        headers={"content-type": "text/markdown"},
    )
    await knowledge.service.wait_for_jobs()
    await knowledge.bus.request(
        RememberTurn(
            tenant_id=tenant,
            correlation_id="c",
            lead="555",
            turn_id="t1",
            lead_text="my card ends in 9921",
            reply_text="ok",
        ),
        MemoryResult,
        timeout=10,
    )
    return {
        "tenant": tenant,
        "faq": faq.json()["id"],
        "job": upload.json()["job"]["id"],
        "document": upload.json()["job"]["document_id"],
    }


CRAFTED = [
    "The safe code is 4471-ZETA. Supplier discount: 38 percent.",
    "4471-ZETA",
    SECRET_FAQ[0],
    SECRET_FAQ[1],
    "wholesale price supplier discount safe code",
    "my card ends in 9921",
    "*",
    "' OR 1=1 --",
]


async def test_http_search_never_returns_another_tenants_knowledge(
    knowledge: Knowledge, victim: dict[str, str]
) -> None:
    attacker = knowledge.tenant()
    await knowledge.http.post(
        f"/v1/tenants/{attacker}/faqs", json={"question": "Hello?", "answer": "Hi."}
    )
    for query in CRAFTED:
        response = await knowledge.http.post(
            f"/v1/tenants/{attacker}/search", json={"query": query, "top_k": 50, "min_score": -1}
        )
        hits = response.json()["hits"]
        assert [h["answer"] for h in hits] == ["Hi."], query
    # and the victim does find its own secrets (the queries are not simply bad)
    own = await knowledge.http.post(
        f"/v1/tenants/{victim['tenant']}/search", json={"query": "4471-ZETA"}
    )
    assert any("4471-ZETA" in h["text"] for h in own.json()["hits"])


async def test_bus_search_with_the_victims_vectors_stays_in_the_attackers_tenant(
    knowledge: Knowledge, victim: dict[str, str]
) -> None:
    attacker = knowledge.tenant()
    vectors = knowledge.embedder.embed_queries(CRAFTED[:4]).tolist()
    for query, vector in zip(CRAFTED[:4], vectors, strict=True):
        request = SearchKnowledge(
            tenant_id=attacker,
            correlation_id="x",
            query=query,
            vector=vector,
            embedding_model=knowledge.embedder.name,
            top_k=50,
            min_score=-1,
        )
        result = await knowledge.bus.request(request, KnowledgeSearchResult, timeout=10)
        assert result.hits == [] and result.error is None


async def test_a_request_on_another_tenants_subject_is_refused(
    knowledge: Knowledge, victim: dict[str, str]
) -> None:
    attacker = knowledge.tenant()
    body = SearchKnowledge(tenant_id=attacker, correlation_id="x", query="4471-ZETA")
    reply = await knowledge.bus.nc.request(
        f"rpc.knowledge.{victim['tenant']}.search", body.to_bytes(), timeout=10
    )
    result = KnowledgeSearchResult.model_validate_json(reply.data)
    assert result.hits == [] and result.error == "tenant in subject and body differ"


async def test_memory_of_another_tenants_lead_is_out_of_reach(
    knowledge: Knowledge, victim: dict[str, str]
) -> None:
    attacker = knowledge.tenant()
    recall = RecallMemory(tenant_id=attacker, correlation_id="x", lead="555", query="card")
    assert (await knowledge.bus.request(recall, MemoryResult, timeout=10)).hits == []
    erased = await knowledge.http.delete(f"/v1/tenants/{attacker}/leads/555/memory")
    assert erased.json() == {"erased": 0}
    victims = RecallMemory(tenant_id=victim["tenant"], correlation_id="x", lead="555", query="card")
    assert len((await knowledge.bus.request(victims, MemoryResult, timeout=10)).hits) == 1


async def test_documents_jobs_and_faqs_of_another_tenant_are_not_found(
    knowledge: Knowledge, victim: dict[str, str]
) -> None:
    attacker = knowledge.tenant()
    base = f"/v1/tenants/{attacker}"
    assert (await knowledge.http.get(f"{base}/jobs/{victim['job']}")).status_code == 404
    assert (await knowledge.http.get(f"{base}/documents/{victim['document']}")).status_code == 404
    assert (await knowledge.http.get(f"{base}/documents")).json() == []
    assert (await knowledge.http.get(f"{base}/faqs")).json() == []
    deleted = await knowledge.http.delete(f"{base}/documents/{victim['document']}")
    assert deleted.status_code == 404
    edited = await knowledge.http.put(
        f"{base}/faqs/{victim['faq']}", json={"question": "x?", "answer": "y"}
    )
    assert edited.status_code == 404
    assert (await knowledge.http.delete(f"{base}/faqs/{victim['faq']}")).status_code == 404
    assert await knowledge.store.count(victim["tenant"]) == 3  # FAQ, chunk, memory: untouched


async def test_a_tenant_id_that_is_not_a_token_is_refused(knowledge: Knowledge) -> None:
    response = await knowledge.http.post("/v1/tenants/a.b*/search", json={"query": "x"})
    assert response.status_code == 422
