"""Conversation HTTP API: the event history, human takeover, GDPR export and erasure.

Every route needs a token whose role allows its action on the path's tenant (the guard)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from taskpilot.contracts import LeadId, TenantId
from taskpilot.conversation.domain import NotHeldByHumanError, WindowClosedError
from taskpilot.conversation.gdpr import ErasureIncompleteError, Gdpr
from taskpilot.conversation.service import ConversationNotFoundError, Conversations
from taskpilot.conversation.whatif import Comparison, WhatIf
from taskpilot.runtime.auth import Guard
from taskpilot.tenancy.access import Action, Principal


class HumanMessage(BaseModel):
    text: str = Field(min_length=1, max_length=4096)


# The acting person is always the credential's (its name, else its subject): a body or query
# field naming someone else is ignored, so nobody can act or erase in another person's name.


def conversations_router(
    app: Conversations, gdpr: Gdpr, guard: Guard, what_if: WhatIf
) -> APIRouter:
    # Signed in first: without a credential every request is a 401, whatever else it holds.
    router = APIRouter(
        prefix="/v1/tenants/{tenant_id}", tags=["conversations"], dependencies=[guard.signed_in()]
    )
    read, converse = guard.allows(Action.READ), guard.allows(Action.CONVERSE)
    export, erase = guard.allows(Action.EXPORT), guard.allows(Action.ERASE)
    configure = guard.allows(Action.CONFIGURE)  # a what-if tunes settings, and spends on models

    async def call(use_case: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(use_case, *args)
        except ConversationNotFoundError:
            raise HTTPException(404, "no such conversation") from None
        except NotHeldByHumanError as exc:
            raise HTTPException(409, str(exc)) from None
        except WindowClosedError as exc:
            raise HTTPException(
                409, f"{exc}: only an approved template can reach the lead now"
            ) from None

    @router.get("/conversations/{conversation_id}/events", dependencies=[read])
    async def timeline(tenant_id: TenantId, conversation_id: str) -> list[dict[str, Any]]:
        """Every stored event of the conversation, in order (the replayable history)."""
        result: list[dict[str, Any]] = await call(app.history_of, tenant_id, conversation_id)
        return result

    @router.post("/conversations/{conversation_id}/takeover")
    async def take_over(
        tenant_id: TenantId, conversation_id: str, who: Principal = converse
    ) -> dict[str, bool]:
        """A person takes the conversation; the bot stays silent until it is handed back."""
        return {"changed": await call(app.take_over, tenant_id, conversation_id, who.agent)}

    @router.post("/conversations/{conversation_id}/messages", status_code=202)
    async def reply_as_human(
        tenant_id: TenantId, conversation_id: str, body: HumanMessage, who: Principal = converse
    ) -> dict[str, str]:
        """Send a person's reply through the same send path as the bot's."""
        turn = await call(app.human_reply, tenant_id, conversation_id, who.agent, body.text)
        return {"turn_id": turn}

    @router.post("/conversations/{conversation_id}/release")
    async def hand_back(
        tenant_id: TenantId, conversation_id: str, who: Principal = converse
    ) -> dict[str, bool]:
        """Hand the conversation back to the assistant."""
        return {"changed": await call(app.release, tenant_id, conversation_id, who.agent)}

    @router.post("/conversations/{conversation_id}/what-if", dependencies=[configure])
    async def what_if_replay(
        tenant_id: TenantId, conversation_id: str, limit: int = Query(default=20, ge=1, le=100)
    ) -> list[Comparison]:
        """The last ``limit`` answered turns through today's inference, then and now side by
        side. A dry run: nothing is sent to the lead, stored, or published."""
        try:
            return await what_if.replay(tenant_id, conversation_id, limit)
        except ConversationNotFoundError:
            raise HTTPException(404, "no such conversation") from None

    @router.get("/leads/{lead}/export", dependencies=[export])
    async def export_lead(tenant_id: TenantId, lead: LeadId) -> dict[str, Any]:
        """Everything this service holds about a lead, as JSON (GDPR access request)."""
        try:
            return await gdpr.export(tenant_id, lead)
        except ConversationNotFoundError:
            raise HTTPException(404, "nothing is held about this lead") from None

    @router.delete("/leads/{lead}")
    async def erase_lead(
        tenant_id: TenantId, lead: LeadId, who: Principal = erase
    ) -> dict[str, Any]:
        """Erase the lead everywhere (GDPR); the erasure itself is recorded and announced, in
        the name of the credential's holder."""
        try:
            return await gdpr.erase(tenant_id, lead, who.agent)
        except ErasureIncompleteError as exc:
            raise HTTPException(503, f"{exc}; nothing was erased, retry") from None

    return router
