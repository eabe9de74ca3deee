"""An indexing job survives its process being killed (SIGKILL) mid-way: a new process takes
the job over, continues from the chunks already embedded, and the document ends up indexed
with exactly its own points, searchable."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskpilot.embeddings import default_embedder
from taskpilot.knowledge.adapters import EdgeVectorStore
from taskpilot.knowledge.domain import EmbeddingSpace, chunk_item_id, point_id
from taskpilot.runtime.servers import NatsServer, free_port
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import ServiceProcess, eventually
from taskpilot.runtime.testing.tokens import bearer, inline_jwks
from taskpilot.tenancy.tokens import LocalIssuer

pytestmark = pytest.mark.asyncio(loop_scope="session")

MATERIALS = ("oak", "steel", "glass", "cork")


def catalogue(items: int) -> bytes:
    """One chunk per widget (a heading and its short section): ``items`` chunks."""
    sections = [
        f"## Widget W-{n}\n\nThe widget W-{n} is made of {MATERIALS[n % 4]} and costs "
        f"{n + 10} euros. It ships within {n % 5 + 1} days to Portugal and Spain; returns "
        "are free for thirty days."
        for n in range(items)
    ]
    return ("# Widget catalogue\n\n" + "\n\n".join(sections)).encode()


def knowledge_process(
    name: str, tmp_path: Path, nats_url: str, database_url: str, jwks: str
) -> ServiceProcess:
    port = free_port()
    env = {
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "TASKPILOT_SECRET_KEYS": DEV_SECRET_KEYS,
        "TASKPILOT_LOG_JSON": "false",
        "TASKPILOT_AUTH_JWKS": jwks,
        "TASKPILOT_DATA_DIR": str(tmp_path / "data"),
        "TASKPILOT_KNOWLEDGE_HTTP_PORT": str(port),
        # Small batches: progress is saved often, so the kill lands between two of them.
        "TASKPILOT_KNOWLEDGE_EMBED_BATCH": "8",
        # A dead process's claim runs out 2 s after its last heartbeat; sweeps twice a second.
        "TASKPILOT_KNOWLEDGE_JOB_LEASE_S": "2",
        "TASKPILOT_KNOWLEDGE_JOB_SWEEP_S": "0.5",
    }
    return ServiceProcess("taskpilot.knowledge", env, port, tmp_path / f"{name}.log")


async def test_an_indexing_job_resumes_after_its_process_is_killed(
    nats_server: NatsServer, fresh_database_url: str, tmp_path: Path, token_issuer: LocalIssuer
) -> None:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    headers = bearer(token_issuer, tenant)
    jwks = inline_jwks(token_issuer)
    first = knowledge_process("first", tmp_path, nats_server.url, fresh_database_url, jwks)
    second = knowledge_process("second", tmp_path, nats_server.url, fresh_database_url, jwks)
    seen_done: list[int] = []
    try:
        first.start()
        await first.wait_ready()
        async with httpx.AsyncClient(base_url=first.base_url, headers=headers) as http:
            response = await http.post(
                f"/v1/tenants/{tenant}/documents",
                params={"filename": "catalogue.md", "title": "Catalogue"},
                content=catalogue(200),
                headers={"content-type": "text/markdown"},
            )
            assert response.status_code == 202, response.text
            upload = response.json()
            total, status_url = upload["job"]["total"], upload["status_url"]
            document_id = upload["job"]["document_id"]
            assert total == 200

            async def some_chunks_done() -> bool:
                job = (await http.get(status_url)).json()
                seen_done.append(job["done"])
                return job["status"] == "embedding" and 16 <= job["done"] < total

            await eventually(some_chunks_done, timeout=60, what="some chunks embedded")
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        done_before_kill = seen_done[-1]

        second.start()
        await second.wait_ready()
        async with httpx.AsyncClient(base_url=second.base_url, headers=headers) as http:

            async def finished() -> dict[str, Any]:
                job: dict[str, Any] = (await http.get(status_url)).json()
                seen_done.append(job["done"])
                return job if job["status"] in ("done", "failed") else {}

            job = await eventually(finished, timeout=60, what="the job finished by the second")
            assert (job["status"], job["done"], job["total"]) == ("done", total, total), job
            assert job["attempts"] == 2, "taken over once, by the second process"
            # Progress never went back (polled every 20 ms, batches of 8): the second process
            # continued from the vectors the first had saved instead of starting over.
            assert seen_done == sorted(seen_done) and done_before_kill >= 16
            document = (await http.get(f"/v1/tenants/{tenant}/documents/{document_id}")).json()
            assert (document["status"], document["chunks"]) == ("indexed", total)
            hits = (
                await http.post(
                    f"/v1/tenants/{tenant}/search",
                    json={"query": "What is the widget W-137 made of?", "top_k": 3},
                )
            ).json()["hits"]
            assert hits and hits[0]["document_id"] == document_id, hits
            assert "W-137 is made of steel" in hits[0]["text"]
        assert second.stop() == 0  # a graceful stop flushes and closes the store

        embedder = default_embedder()
        store = EdgeVectorStore(
            tmp_path / "data" / "qdrant", "knowledge", EmbeddingSpace(embedder.name, embedder.dim)
        )
        await store.open()
        try:
            expected = {
                point_id(tenant, "chunk", chunk_item_id(document_id, n)) for n in range(total)
            }
            found = store.shard.retrieve(list(expected), False, False)
            assert {str(p.id) for p in found} == expected
            assert await store.count(tenant) == total, "no duplicates, no strays"
        finally:
            await store.close()
    finally:
        second.stop()
        first.stop(signal.SIGKILL)
