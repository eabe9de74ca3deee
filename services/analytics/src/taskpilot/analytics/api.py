"""The dashboard API: conversations with their messages, dead letters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query

from taskpilot.analytics.repository import AnalyticsRepository
from taskpilot.contracts import TenantId


def dashboard_router(repo: AnalyticsRepository) -> APIRouter:
    router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["dashboard"])

    @router.get("/conversations")
    async def list_conversations(
        tenant_id: TenantId,
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0),
        status: str | None = Query(None, pattern="^(bot|human|closed)$"),
    ) -> list[dict[str, Any]]:
        return await repo.conversations(tenant_id, limit, offset, status)

    @router.get("/conversations/{conversation_id}")
    async def get_conversation(tenant_id: TenantId, conversation_id: str) -> dict[str, Any]:
        conversation = await repo.conversation(tenant_id, conversation_id)
        if conversation is None:
            raise HTTPException(404, "no such conversation")
        return conversation

    @router.get("/dead-letters")
    async def list_dead_letters(
        tenant_id: TenantId,
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0),
    ) -> list[dict[str, Any]]:
        return await repo.dead_letters(tenant_id, limit, offset)

    return router
