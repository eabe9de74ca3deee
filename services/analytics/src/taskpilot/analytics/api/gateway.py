"""The dashboard's door to the sibling services: the token is checked here, the tenant is the
one in the path it allowed, and the acting person is the token's subject (never the body's).
The caller's credential goes on to the sibling, which checks it again."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from taskpilot.analytics.api.security import Guard
from taskpilot.analytics.domain import Action, Principal
from taskpilot.analytics.sandbox import Sandbox, SandboxMessage
from taskpilot.analytics.upstreams import Upstreams
from taskpilot.contracts import LeadId, TenantId


class HumanText(BaseModel):
    text: str = Field(min_length=1, max_length=4096)


def relay(answer: httpx.Response | None, status: int | None = None, body: Any = None) -> Response:
    """A sibling's answer, status and body as they are."""
    if answer is None:
        return Response(json.dumps(body), status_code=status or 500, media_type="application/json")
    return Response(
        answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type", "application/json"),
    )


def conversation_router(upstreams: Upstreams, guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["conversations"])
    read, converse = guard.allows(Action.READ), guard.allows(Action.CONVERSE)
    export, erase = guard.allows(Action.EXPORT), guard.allows(Action.ERASE)

    def path(tenant_id: str, rest: str) -> str:
        return f"/v1/tenants/{tenant_id}{rest}"

    @router.get("/conversations/{conversation_id}/events")
    async def timeline(tenant_id: TenantId, conversation_id: str, who: Principal = read) -> Any:
        """Every stored event of the conversation (from the conversation service)."""
        return relay(
            await upstreams.call(
                "conversation",
                "GET",
                path(tenant_id, f"/conversations/{conversation_id}/events"),
                caller=who,
            )
        )

    @router.post("/conversations/{conversation_id}/takeover")
    async def take_over(
        tenant_id: TenantId, conversation_id: str, who: Principal = converse
    ) -> Any:
        return relay(
            await upstreams.call(
                "conversation",
                "POST",
                path(tenant_id, f"/conversations/{conversation_id}/takeover"),
                json={"agent": who.agent},
                caller=who,
            )
        )

    @router.post("/conversations/{conversation_id}/messages", status_code=202)
    async def reply_as_human(
        tenant_id: TenantId, conversation_id: str, body: HumanText, who: Principal = converse
    ) -> Any:
        return relay(
            await upstreams.call(
                "conversation",
                "POST",
                path(tenant_id, f"/conversations/{conversation_id}/messages"),
                json={"agent": who.agent, "text": body.text},
                caller=who,
            )
        )

    @router.post("/conversations/{conversation_id}/release")
    async def hand_back(
        tenant_id: TenantId, conversation_id: str, who: Principal = converse
    ) -> Any:
        return relay(
            await upstreams.call(
                "conversation",
                "POST",
                path(tenant_id, f"/conversations/{conversation_id}/release"),
                json={"agent": who.agent},
                caller=who,
            )
        )

    @router.get("/leads/{lead}/export")
    async def export_lead(tenant_id: TenantId, lead: LeadId, who: Principal = export) -> Any:
        """Everything held about a lead (GDPR access request)."""
        return relay(
            await upstreams.call(
                "conversation", "GET", path(tenant_id, f"/leads/{lead}/export"), caller=who
            )
        )

    @router.delete("/leads/{lead}")
    async def erase_lead(tenant_id: TenantId, lead: LeadId, who: Principal = erase) -> Any:
        return relay(
            await upstreams.call(
                "conversation",
                "DELETE",
                path(tenant_id, f"/leads/{lead}"),
                params={"requested_by": who.agent},
                caller=who,
            )
        )

    return router


def knowledge_router(upstreams: Upstreams, guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/v1/tenants/{tenant_id}/knowledge", tags=["knowledge"])
    read, edit = guard.allows(Action.READ), guard.allows(Action.EDIT_KNOWLEDGE)

    async def forward(request: Request, tenant_id: str, rest: str) -> Response:
        who: Principal = request.state.principal  # set by the guard of every route below
        content = await request.body()
        headers = {"Content-Type": request.headers.get("content-type", "application/json")}
        return relay(
            await upstreams.call(
                "knowledge",
                request.method,
                f"/v1/tenants/{tenant_id}{rest}",
                content=content or None,
                headers=headers,
                params=dict(request.query_params),
                timeout=120.0,
                caller=who,
            )
        )

    @router.get("/faqs", dependencies=[read])
    async def list_faqs(tenant_id: TenantId, request: Request) -> Response:
        return await forward(request, tenant_id, "/faqs")

    @router.post("/faqs", dependencies=[edit], status_code=201)
    async def add_faq(tenant_id: TenantId, request: Request) -> Response:
        """``{"question": ..., "answer": ...}``"""
        return await forward(request, tenant_id, "/faqs")

    @router.put("/faqs/{faq_id}", dependencies=[edit])
    async def update_faq(tenant_id: TenantId, faq_id: str, request: Request) -> Response:
        return await forward(request, tenant_id, f"/faqs/{faq_id}")

    @router.delete("/faqs/{faq_id}", dependencies=[edit], status_code=204)
    async def delete_faq(tenant_id: TenantId, faq_id: str, request: Request) -> Response:
        return await forward(request, tenant_id, f"/faqs/{faq_id}")

    @router.get("/documents", dependencies=[read])
    async def list_documents(tenant_id: TenantId, request: Request) -> Response:
        return await forward(request, tenant_id, "/documents")

    @router.post("/documents", dependencies=[edit], status_code=202)
    async def upload_document(tenant_id: TenantId, request: Request) -> Response:
        """multipart/form-data (file, title, source) or the raw file; then poll the job."""
        return await forward(request, tenant_id, "/documents")

    @router.delete("/documents/{document_id}", dependencies=[edit], status_code=204)
    async def delete_document(tenant_id: TenantId, document_id: str, request: Request) -> Response:
        return await forward(request, tenant_id, f"/documents/{document_id}")

    @router.get("/jobs/{job_id}", dependencies=[read])
    async def job(tenant_id: TenantId, job_id: str, request: Request) -> Response:
        """Progress of a document upload (chunking, embedding, indexing)."""
        return await forward(request, tenant_id, f"/jobs/{job_id}")

    @router.post("/search", dependencies=[read])
    async def search(tenant_id: TenantId, request: Request) -> Response:
        return await forward(request, tenant_id, "/search")

    return router


def sandbox_router(sandbox: Sandbox, guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/v1/tenants/{tenant_id}/sandbox", tags=["sandbox"])
    read, converse = guard.allows(Action.READ), guard.allows(Action.CONVERSE)

    @router.post("/messages", dependencies=[converse], status_code=202)
    async def write_as_lead(tenant_id: TenantId, message: SandboxMessage) -> dict[str, Any]:
        """Send a message as a lead, signed like Meta signs it, to ingest."""
        return await sandbox.send(tenant_id, message)

    @router.get("/messages", dependencies=[read])
    async def lead_phone(
        tenant_id: TenantId,
        lead: LeadId,
        after: int = 0,
        wait: Annotated[float, Query(ge=0, le=25)] = 0,
    ) -> list[dict[str, Any]]:
        """What the lead's phone received from the tenant (long-polls up to ``wait`` s)."""
        return await sandbox.received(tenant_id, lead, after, wait)

    return router
