"""Knowledge HTTP API for the dashboard: FAQs, documents (upload, progress, delete), search,
lead memory. Domain errors become HTTP statuses here and nowhere else; every route needs a
token whose role allows its action on the path's tenant (the guard)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from taskpilot.contracts import LeadId, TenantId
from taskpilot.contracts.knowledge import KnowledgeSearchResult, MemoryHit, SearchKnowledge
from taskpilot.knowledge.domain import (
    Document,
    DocumentIn,
    DocumentRejectedError,
    DocumentTooLargeError,
    EmbeddingMismatchError,
    EmptyDocumentError,
    Faq,
    FaqIn,
    Job,
    MemoryTurn,
)
from taskpilot.knowledge.service import (
    DocumentNotFoundError,
    FaqNotFoundError,
    JobNotFoundError,
    KnowledgeService,
)
from taskpilot.runtime.auth import Guard
from taskpilot.tenancy.access import Action

MULTIPART_SLACK = 64 * 1024
"""Room for multipart boundaries and form fields on top of the file itself."""


class SearchIn(BaseModel):
    query: str = Field(min_length=1, max_length=2000)
    top_k: int = Field(default=5, ge=1, le=50)
    kinds: list[Literal["faq", "chunk"]] = ["faq", "chunk"]
    min_score: float | None = None


class TurnIn(BaseModel):
    turn_id: str = Field(min_length=1, max_length=200)
    lead_text: str = Field(max_length=8000)
    reply_text: str = Field(default="", max_length=8000)


class RecallIn(BaseModel):
    query: str = Field(min_length=1, max_length=2000)
    top_k: int = Field(default=3, ge=1, le=20)
    min_score: float | None = None


class Upload(BaseModel):
    job: Job
    status_url: str


def _rejected(exc: DocumentRejectedError) -> HTTPException:
    return HTTPException(exc.status, {"reason": exc.reason, "message": str(exc)})


async def _read_limited(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it passes ``limit`` (before it is all received)."""
    chunks, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise DocumentTooLargeError(f"the upload is larger than the {limit}-byte limit")
        chunks.append(part)
    return b"".join(chunks)


async def _upload_of(
    request: Request, limit: int, title: str, source: str, filename: str
) -> DocumentIn:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
        raise DocumentTooLargeError(f"the upload is {declared} bytes; the limit is {limit}")
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        data = await _read_limited(request, limit)
        return DocumentIn(
            filename=filename, content_type=content_type, title=title, source=source, data=data
        )
    form = await request.form(max_files=1, max_fields=10)
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise EmptyDocumentError("no file in the form (field 'file')")
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise DocumentTooLargeError(f"the file is larger than the {limit}-byte limit")
    return DocumentIn(
        filename=file.filename or filename,
        content_type=file.content_type or "",
        title=str(form.get("title") or title),
        source=str(form.get("source") or source),
        data=data,
    )


def knowledge_router(service: KnowledgeService, guard: Guard) -> APIRouter:
    # Signed in first: without a credential every request is a 401, whatever else it holds.
    router = APIRouter(
        prefix="/v1/tenants/{tenant_id}", tags=["knowledge"], dependencies=[guard.signed_in()]
    )
    read, edit = guard.allows(Action.READ), guard.allows(Action.EDIT_KNOWLEDGE)
    configure, converse = guard.allows(Action.CONFIGURE), guard.allows(Action.CONVERSE)
    forget = guard.allows(Action.ERASE)

    @router.post("/faqs", status_code=201, dependencies=[edit])
    async def create_faq(tenant_id: TenantId, faq: FaqIn) -> Faq:
        return await service.add_faq(tenant_id, faq.question, faq.answer)

    @router.get("/faqs", dependencies=[read])
    async def list_faqs(tenant_id: TenantId) -> list[Faq]:
        return await service.list_faqs(tenant_id)

    @router.put("/faqs/{faq_id}", dependencies=[edit])
    async def update_faq(tenant_id: TenantId, faq_id: str, faq: FaqIn) -> Faq:
        try:
            return await service.update_faq(tenant_id, faq_id, faq.question, faq.answer)
        except FaqNotFoundError:
            raise HTTPException(404, "no such FAQ") from None

    @router.delete("/faqs/{faq_id}", status_code=204, dependencies=[edit])
    async def delete_faq(tenant_id: TenantId, faq_id: str) -> None:
        try:
            await service.delete_faq(tenant_id, faq_id)
        except FaqNotFoundError:
            raise HTTPException(404, "no such FAQ") from None

    @router.post(
        "/documents",
        status_code=202,
        openapi_extra={"description": "multipart/form-data (file, title, source) or the raw file"},
        dependencies=[edit],
    )
    async def upload_document(
        tenant_id: TenantId,
        request: Request,
        response: Response,
        title: Annotated[str, Query(max_length=300)] = "",
        source: Annotated[str, Query(max_length=1000)] = "",
        filename: Annotated[str, Query(max_length=300)] = "",
    ) -> Upload:
        """Validates and chunks at once (4xx with the reason when the file is unusable), then
        embeds and indexes in the background: poll ``status_url`` for progress."""
        try:
            upload = await _upload_of(request, service.max_upload_bytes, title, source, filename)
            job = await service.start_upload(tenant_id, upload)
        except DocumentRejectedError as exc:
            raise _rejected(exc) from None
        status_url = f"/v1/tenants/{tenant_id}/jobs/{job.id}"
        response.headers["Location"] = status_url
        return Upload(job=job, status_url=status_url)

    @router.get("/jobs/{job_id}", dependencies=[read])
    async def get_job(tenant_id: TenantId, job_id: str) -> Job:
        try:
            return await service.job(tenant_id, job_id)
        except JobNotFoundError:
            raise HTTPException(404, "no such job") from None

    @router.get("/documents", dependencies=[read])
    async def list_documents(tenant_id: TenantId) -> list[Document]:
        return await service.list_documents(tenant_id)

    @router.get("/documents/{document_id}", dependencies=[read])
    async def get_document(tenant_id: TenantId, document_id: str) -> Document:
        try:
            return await service.document(tenant_id, document_id)
        except DocumentNotFoundError:
            raise HTTPException(404, "no such document") from None

    @router.delete("/documents/{document_id}", status_code=204, dependencies=[edit])
    async def delete_document(tenant_id: TenantId, document_id: str) -> None:
        try:
            await service.delete_document(tenant_id, document_id)
        except DocumentNotFoundError:
            raise HTTPException(404, "no such document") from None

    @router.post("/search", dependencies=[read])
    async def search(tenant_id: TenantId, body: SearchIn) -> KnowledgeSearchResult:
        try:
            return await service.search(
                SearchKnowledge(
                    tenant_id=tenant_id,
                    correlation_id="http",
                    query=body.query,
                    top_k=body.top_k,
                    kinds=body.kinds,
                    min_score=body.min_score,
                )
            )
        except EmbeddingMismatchError as exc:
            raise HTTPException(409, str(exc)) from None

    @router.post("/reindex", dependencies=[configure])
    async def reindex(tenant_id: TenantId) -> dict[str, int]:
        return {"points": await service.reindex(tenant_id)}

    @router.post("/leads/{lead}/memory", status_code=201, dependencies=[converse])
    async def remember(tenant_id: TenantId, lead: LeadId, turn: TurnIn) -> JSONResponse:
        await service.remember(MemoryTurn(tenant_id=tenant_id, lead_id=lead, **turn.model_dump()))
        return JSONResponse({"stored": 1}, status_code=201)

    @router.post("/leads/{lead}/memory/search", dependencies=[read])
    async def recall(tenant_id: TenantId, lead: LeadId, body: RecallIn) -> list[MemoryHit]:
        return await service.recall(tenant_id, lead, body.query, body.top_k, body.min_score)

    @router.delete("/leads/{lead}/memory", dependencies=[forget])
    async def erase(tenant_id: TenantId, lead: LeadId) -> dict[str, int]:
        """Forget the lead (GDPR erase): every remembered turn, rows and vectors."""
        return {"erased": await service.erase_lead(tenant_id, lead)}

    return router
