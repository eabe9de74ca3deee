"""Documents through the HTTP API: upload, progress, citations, bad input, all-or-nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskpilot.knowledge.domain import VectorPoint
from taskpilot.runtime.testing import eventually
from tests.integration.knowledge.conftest import Announcements, Knowledge
from tests.integration.knowledge.samples import PRICE_LIST_PDF_LINES, pdf

pytestmark = pytest.mark.asyncio(loop_scope="session")

DATA = Path(__file__).parents[3] / "bench" / "data" / "knowledge"


async def finished_job(k: Knowledge, tenant: str, status_url: str) -> dict[str, object]:
    async def done() -> dict[str, object] | None:
        job = (await k.http.get(status_url)).json()
        return job if job["status"] in ("done", "failed") else None

    return await eventually(done, timeout=60, what="indexing job finished")


async def search(k: Knowledge, tenant: str, query: str, **body: object) -> list[dict[str, object]]:
    response = await k.http.post(f"/v1/tenants/{tenant}/search", json={"query": query, **body})
    assert response.status_code == 200, response.text
    return response.json()["hits"]


async def test_a_markdown_upload_is_chunked_indexed_and_cited(
    knowledge: Knowledge, announcements: tuple[str, Announcements]
) -> None:
    tenant, seen = announcements
    response = await knowledge.http.post(
        f"/v1/tenants/{tenant}/documents",
        files={"file": ("workshop.md", (DATA / "rayo" / "workshop.md").read_bytes())},
        data={"title": "Workshop", "source": "workshop price list"},
    )
    assert response.status_code == 202, response.text
    upload = response.json()
    assert response.headers["location"] == upload["status_url"]
    assert upload["job"]["total"] == 5
    job = await finished_job(knowledge, tenant, upload["status_url"])
    assert job["status"] == "done" and job["done"] == job["total"] == 5

    document_id = upload["job"]["document_id"]
    document = (await knowledge.http.get(f"/v1/tenants/{tenant}/documents/{document_id}")).json()
    assert document["status"] == "indexed" and document["chunks"] == 5
    hits = await search(knowledge, tenant, "How much does it cost to fix a flat tyre?", top_k=3)
    top = hits[0]
    assert top["kind"] == "chunk" and "Flat tyre repair costs 12 €" in top["text"]
    assert (top["document_id"], top["position"]) == (document_id, 2)
    assert top["source"] == "workshop price list"
    assert top["title"].startswith("Workshop › ") and "Repairs and parts" in top["title"]
    assert 0 < top["score"] <= 1 and top["rank_score"] is not None
    await eventually(lambda: _true(seen.versions == [1]), what="KnowledgeUpdated v1")
    assert seen.events[0].change == "document_indexed"


async def _true(value: bool) -> bool:
    return value


async def test_raw_uploads_of_pdf_html_and_text(knowledge: Knowledge) -> None:
    tenant = knowledge.tenant()
    uploads = [
        ("winter.pdf", "application/pdf", pdf(PRICE_LIST_PDF_LINES), "studded winter tyres"),
        ("store.html", "text/html", (DATA / "rayo" / "store.html").read_bytes(), "MB WAY"),
        ("care.txt", "text/plain", (DATA / "aurora" / "aftercare.txt").read_bytes(), "185 °C"),
    ]
    for filename, content_type, data, _ in uploads:
        response = await knowledge.http.post(
            f"/v1/tenants/{tenant}/documents",
            params={"filename": filename, "title": filename},
            content=data,
            headers={"content-type": content_type},
        )
        assert response.status_code == 202, response.text
        job = await finished_job(knowledge, tenant, response.json()["status_url"])
        assert job["status"] == "done", job
    for query, expect in [
        ("When does the workshop open in winter?", "opens at 10:00"),
        ("Can I pay with MB WAY?", "MB WAY"),
        ("how hot can my straightener be", "185 °C"),
    ]:
        hits = await search(knowledge, tenant, query, top_k=3)
        assert any(expect in h["text"] for h in hits), (query, hits)


@pytest.mark.parametrize(
    ("filename", "content_type", "data", "status", "reason"),
    [
        ("empty.md", "text/markdown", b"", 400, "empty_file"),
        (
            "notes.docx",
            "application/vnd.openxmlformats",
            b"PK\x03\x04 zip",
            415,
            "unsupported_type",
        ),
        ("photo.png", "image/png", b"\x89PNG\r\n", 415, "unsupported_type"),
        ("big.txt", "text/plain", b"word " * 60_000, 413, "too_large"),
        (
            "broken.pdf",
            "application/pdf",
            b"%PDF-1.7\n1 0 obj << /Type /Catalog",
            422,
            "corrupt_file",
        ),
        ("fake.pdf", "application/pdf", b"this is not a pdf at all", 422, "corrupt_file"),
        (
            "secret.pdf",
            "application/pdf",
            pdf([["Secret prices"]], password="s3cret"),
            422,
            "encrypted_pdf",
        ),
        ("blank.pdf", "application/pdf", pdf([[]]), 422, "no_text"),
        (
            "script.html",
            "text/html",
            b"<html><script>var a=1</script><p> </p></html>",
            422,
            "no_text",
        ),
        ("spaces.txt", "text/plain", b"   \n\n \t ", 422, "no_text"),
        ("binary.txt", "text/plain", b"\x00\x01\x02binary", 422, "corrupt_file"),
    ],
)
async def test_bad_uploads_are_refused_with_a_reason_and_nothing_is_stored(
    knowledge: Knowledge,
    filename: str,
    content_type: str,
    data: bytes,
    status: int,
    reason: str,
) -> None:
    tenant = knowledge.tenant()
    response = await knowledge.http.post(
        f"/v1/tenants/{tenant}/documents",
        files={"file": (filename, data, content_type)},
    )
    assert response.status_code == status, response.text
    assert response.json()["detail"]["reason"] == reason
    assert (await knowledge.http.get(f"/v1/tenants/{tenant}/documents")).json() == []
    assert await knowledge.store.count(tenant) == 0


async def test_an_oversized_raw_upload_is_refused_before_it_is_read(knowledge: Knowledge) -> None:
    tenant = knowledge.tenant()

    async def endless() -> object:
        for _ in range(1000):  # 1000 x 1 KiB, well past the 256 KiB test limit
            yield b"x" * 1024

    response = await knowledge.http.post(
        f"/v1/tenants/{tenant}/documents",
        params={"filename": "stream.txt"},
        content=endless(),
        headers={"content-type": "text/plain"},
    )
    assert response.status_code == 413
    assert response.json()["detail"]["reason"] == "too_large"


class FailingUpserts:
    """Wraps the real store; fails every upsert of document chunks (as a crashed index would)."""

    def __init__(self, store: object):
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def upsert(self, points: list[VectorPoint]) -> None:
        half = points[: len(points) // 2]
        await self._store.upsert(half)  # type: ignore[attr-defined]
        raise RuntimeError("index went away half-way")


async def test_a_failed_indexing_leaves_nothing_half_indexed(
    knowledge: Knowledge, announcements: tuple[str, Announcements]
) -> None:
    tenant, seen = announcements
    retriever = knowledge.service._retriever
    real = retriever.store
    retriever.store = knowledge.service._store = FailingUpserts(real)  # type: ignore[assignment]
    try:
        response = await knowledge.http.post(
            f"/v1/tenants/{tenant}/documents",
            files={"file": ("policies.md", (DATA / "aurora" / "policies.md").read_bytes())},
        )
        job = await finished_job(knowledge, tenant, response.json()["status_url"])
    finally:
        retriever.store = knowledge.service._store = real
    assert job["status"] == "failed" and "half-way" in str(job["error"])
    [document] = (await knowledge.http.get(f"/v1/tenants/{tenant}/documents")).json()
    assert document["status"] == "failed"
    assert await knowledge.store.count(tenant) == 0
    assert await search(knowledge, tenant, "Can I pay with Bizum?") == []
    assert seen.events == []  # the version did not change


async def test_deleting_a_document_removes_its_chunks(
    knowledge: Knowledge, announcements: tuple[str, Announcements]
) -> None:
    tenant, seen = announcements
    response = await knowledge.http.post(
        f"/v1/tenants/{tenant}/documents",
        files={"file": ("rentals.md", (DATA / "rayo" / "rentals.md").read_bytes())},
    )
    await finished_job(knowledge, tenant, response.json()["status_url"])
    document_id = response.json()["job"]["document_id"]
    assert await knowledge.store.count(tenant) == 4
    deleted = await knowledge.http.delete(f"/v1/tenants/{tenant}/documents/{document_id}")
    assert deleted.status_code == 204
    assert await knowledge.store.count(tenant) == 0
    again = await knowledge.http.delete(f"/v1/tenants/{tenant}/documents/{document_id}")
    assert again.status_code == 404
    await eventually(lambda: _true(seen.versions == [1, 2]), what="two versions announced")
    assert [e.change for e in seen.events] == ["document_indexed", "document_deleted"]
