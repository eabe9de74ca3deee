"""Knowledge HTTP API: FAQ management and search for the dashboard."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from taskpilot.contracts import TenantId
from taskpilot.contracts.knowledge import KnowledgeSearchResult, SearchKnowledge
from taskpilot.knowledge.domain import Faq, FaqIn
from taskpilot.knowledge.service import FaqNotFoundError, KnowledgeService


class SearchIn(BaseModel):
    query: str = Field(min_length=1, max_length=2000)
    top_k: int = Field(default=5, ge=1, le=50)


def knowledge_router(service: KnowledgeService) -> APIRouter:
    router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["knowledge"])

    @router.post("/faqs", status_code=201)
    async def create_faq(tenant_id: TenantId, faq: FaqIn) -> Faq:
        return await service.add_faq(tenant_id, faq.question, faq.answer)

    @router.get("/faqs")
    async def list_faqs(tenant_id: TenantId) -> list[Faq]:
        return await service.list_faqs(tenant_id)

    @router.put("/faqs/{faq_id}")
    async def update_faq(tenant_id: TenantId, faq_id: str, faq: FaqIn) -> Faq:
        try:
            return await service.update_faq(tenant_id, faq_id, faq.question, faq.answer)
        except FaqNotFoundError:
            raise HTTPException(404, "no such FAQ") from None

    @router.delete("/faqs/{faq_id}", status_code=204)
    async def delete_faq(tenant_id: TenantId, faq_id: str) -> None:
        try:
            await service.delete_faq(tenant_id, faq_id)
        except FaqNotFoundError:
            raise HTTPException(404, "no such FAQ") from None

    @router.post("/search")
    async def search(tenant_id: TenantId, body: SearchIn) -> KnowledgeSearchResult:
        return await service.search(
            SearchKnowledge(
                tenant_id=tenant_id, correlation_id="http", query=body.query, top_k=body.top_k
            )
        )

    return router
