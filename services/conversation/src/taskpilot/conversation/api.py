"""Conversation HTTP API: the timeline of a conversation, event by event."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException

from taskpilot.contracts import TenantId
from taskpilot.conversation.service import ConversationNotFoundError, Conversations


def timeline_router(app: Conversations) -> APIRouter:
    router = APIRouter(tags=["conversations"])

    @router.get("/v1/tenants/{tenant_id}/conversations/{conversation_id}/events")
    async def timeline(tenant_id: TenantId, conversation_id: str) -> list[dict[str, Any]]:
        """Every stored event of the conversation, in order (the replayable history)."""
        try:
            conversation = await asyncio.to_thread(app.get, tenant_id, conversation_id)
        except ConversationNotFoundError:
            raise HTTPException(404, "no such conversation") from None
        events: list[Any] = await asyncio.to_thread(lambda: list(app.events.get(conversation.id)))
        return [
            {
                "version": e.originator_version,
                "type": type(e).__name__,
                "at": e.timestamp.isoformat(),
                "data": {
                    k: v
                    for k, v in e.__dict__.items()
                    if k not in ("originator_id", "originator_version", "timestamp", "env")
                },
            }
            for e in events
        ]

    return router
