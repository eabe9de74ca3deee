"""Dashboard reads: conversations (list, search, detail, export, live stream) and figures."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse

from taskpilot.analytics.api.security import Guard
from taskpilot.analytics.domain import Action, Principal, effective_status
from taskpilot.analytics.live import ChangeFeed
from taskpilot.analytics.repository import ConversationFilter
from taskpilot.analytics.service import Dashboard, decode_cursor, default_period
from taskpilot.contracts import TenantId

HEARTBEAT_S = 15.0
Status = Literal["bot", "human", "closed"]


def page_headers(response: Response, request: Request, cursor: str | None) -> None:
    """Pagination in headers, so list bodies stay plain arrays (as GitHub's API does)."""
    if cursor:
        response.headers["X-Next-Cursor"] = cursor
        next_page = request.url.include_query_params(cursor=cursor)
        response.headers["Link"] = f'<{next_page}>; rel="next"'


def dashboard_router(dashboard: Dashboard, feed: ChangeFeed, guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["dashboard"])
    read, export = guard.allows(Action.READ), guard.allows(Action.EXPORT)

    def filters(
        status: Status | None,
        q: str | None,
        since: datetime | None,
        until: datetime | None,
        handed_off: bool | None,
        cursor: str | None,
    ) -> ConversationFilter:
        after = decode_cursor(cursor) if cursor else None
        return ConversationFilter(status, q, since, until, handed_off, after)

    @router.get("/conversations", dependencies=[read])
    async def list_conversations(
        tenant_id: TenantId,
        request: Request,
        response: Response,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
        status: Status | None = None,
        q: Annotated[str | None, Query(max_length=200, description="Lead, name or text")] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        handed_off: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Conversations, most recently active first; the next page is ``X-Next-Cursor``."""
        rows, next_cursor = await dashboard.conversations(
            tenant_id, filters(status, q, since, until, handed_off, cursor), limit
        )
        page_headers(response, request, next_cursor)
        return rows

    @router.get("/conversations/export", dependencies=[export])
    async def export_conversations(
        tenant_id: TenantId,
        format: Literal["csv", "ndjson"] = "csv",
        status: Status | None = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        handed_off: bool | None = None,
    ) -> Response:
        rows = await dashboard.export(tenant_id, filters(status, q, since, until, handed_off, None))
        name = f"conversations-{tenant_id}-{datetime.now(UTC):%Y%m%d}.{format}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if format == "ndjson":
            body = "".join(json.dumps(r, default=str) + "\n" for r in rows)
            return Response(body, media_type="application/x-ndjson", headers=headers)
        return Response(_csv(rows), media_type="text/csv", headers=headers)

    @router.get("/conversations/{conversation_id}", dependencies=[read])
    async def get_conversation(tenant_id: TenantId, conversation_id: str) -> dict[str, Any]:
        """The conversation with its messages: each reply's tier, cost, cache hit, sources."""
        return await dashboard.conversation(tenant_id, conversation_id)

    @router.get("/stream", dependencies=[read], response_class=StreamingResponse)
    async def stream(tenant_id: TenantId, request: Request) -> StreamingResponse:
        """Server-sent events: ``conversation`` (the updated list row), ``erased``,
        ``dead_letter``, and ``resync``/``rebuilt`` (refetch everything)."""
        return StreamingResponse(
            _events(feed, tenant_id, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get("/analytics/summary", dependencies=[read])
    async def summary(
        tenant_id: TenantId, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, Any]:
        """Every figure of the period (default: the last 30 days)."""
        return await dashboard.summary(tenant_id, *default_period(since, until))

    @router.get("/analytics/timeseries", dependencies=[read])
    async def timeseries(
        tenant_id: TenantId,
        since: datetime | None = None,
        until: datetime | None = None,
        bucket: Literal["hour", "day", "week", "month"] = "day",
        tz: str = "UTC",
    ) -> dict[str, Any]:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise HTTPException(422, f"unknown time zone {tz!r}") from None
        return await dashboard.timeseries(tenant_id, *default_period(since, until), bucket, tz)

    return router


def me_router(guard: Guard) -> APIRouter:
    router = APIRouter(tags=["auth"])
    signed_in = guard.signed_in()

    @router.get("/v1/me")
    async def me(who: Principal = signed_in) -> dict[str, Any]:
        return {
            "subject": who.subject,
            "name": who.agent,
            "tenant_id": who.tenant_id,
            "roles": sorted(who.roles),
        }

    return router


async def _events(feed: ChangeFeed, tenant_id: str, request: Request) -> AsyncIterator[str]:
    async with feed.subscribe(tenant_id) as queue:
        yield "retry: 2000\nevent: ready\ndata: {}\n\n"
        # A closed connection is otherwise noticed only at the next write (the heartbeat),
        # and an open stream would hold up the server's graceful shutdown until then.
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            while True:
                notice = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {notice, gone}, timeout=HEARTBEAT_S, return_when=asyncio.FIRST_COMPLETED
                )
                if notice not in done:
                    notice.cancel()
                if gone in done:
                    return
                yield _sse(notice.result()) if notice in done else ": keep-alive\n\n"
        finally:
            gone.cancel()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _sse(notice: dict[str, Any]) -> str:
    row = notice.get("conversation")
    if row is not None:
        row["mode"] = row["status"]
        row["status"] = effective_status(row, datetime.now(UTC))
    return f"event: {notice.get('kind', 'message')}\ndata: {json.dumps(notice)}\n\n"


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()
