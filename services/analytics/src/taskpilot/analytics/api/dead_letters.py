"""Dead letters: list, inspect, replay, discard."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from taskpilot.analytics.api.dashboard import page_headers
from taskpilot.analytics.api.security import Guard
from taskpilot.analytics.domain import Action, Principal
from taskpilot.analytics.service import DeadLetterNotFoundError, DeadLetters
from taskpilot.contracts import TenantId


def dead_letters_router(letters: DeadLetters, guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/v1/tenants/{tenant_id}/dead-letters", tags=["dead letters"])
    read, handle = guard.allows(Action.READ), guard.allows(Action.HANDLE_DEAD_LETTERS)

    @router.get("", dependencies=[read])
    async def list_dead_letters(
        tenant_id: TenantId,
        request: Request,
        response: Response,
        status: Literal["open", "replayed", "discarded", "all"] = "all",
        reason: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first. Webhooks for unknown tenants are under the tenant ``_unknown``
        (operators only)."""
        rows, next_cursor = await letters.page(tenant_id, status, reason, cursor, limit)
        page_headers(response, request, next_cursor)
        return rows

    @router.get("/{letter_id}", dependencies=[read])
    async def inspect(tenant_id: TenantId, letter_id: str) -> dict[str, Any]:
        """The whole original message, its headers, the error, attempts, and what was done."""
        return await letters.get(tenant_id, _uuid(letter_id))

    @router.post("/{letter_id}/replay")
    async def replay(
        tenant_id: TenantId, letter_id: str, who: Principal = handle
    ) -> dict[str, Any]:
        """Publish the original message to its subject again, with a new Nats-Msg-Id."""
        return await letters.replay(tenant_id, _uuid(letter_id), who.agent)

    @router.post("/{letter_id}/discard")
    async def discard(
        tenant_id: TenantId, letter_id: str, who: Principal = handle
    ) -> dict[str, Any]:
        return await letters.discard(tenant_id, _uuid(letter_id), who.agent)

    return router


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise DeadLetterNotFoundError(value) from None
