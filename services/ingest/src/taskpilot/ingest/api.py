"""Ingest's HTTP edge: Meta's webhook (verification GET and signed POST)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse

from taskpilot.contracts import TenantId
from taskpilot.ingest.service import SignatureError, WebhookService
from taskpilot.tenancy import UnknownTenantError


class BodyTooLargeError(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def webhook_router(service: WebhookService, max_body_bytes: int) -> APIRouter:
    router = APIRouter(tags=["whatsapp"])

    @router.get("/webhooks/whatsapp/{tenant_id}", response_class=PlainTextResponse)
    async def verify_subscription(
        tenant_id: TenantId,
        mode: str = Query("", alias="hub.mode"),
        token: str = Query("", alias="hub.verify_token"),
        challenge: str = Query("", alias="hub.challenge", max_length=256),
    ) -> str:
        """Meta's verification handshake: echo the challenge when the verify token matches."""
        if not await service.verify_subscription(tenant_id, mode, token):
            raise HTTPException(403, "verify token does not match")
        return challenge

    @router.post(
        "/webhooks/whatsapp/{tenant_id}",
        responses={401: {"description": "bad signature"}, 404: {}, 413: {}},
    )
    async def receive(tenant_id: TenantId, request: Request) -> dict[str, int]:
        """Signed webhook from Meta; 200 once every update in it is stored on the bus."""
        try:
            raw = await read_limited(request, max_body_bytes)
        except BodyTooLargeError:
            raise HTTPException(413, f"body larger than {max_body_bytes} bytes") from None
        try:
            accepted = await service.accept(
                tenant_id, raw, request.headers.get("x-hub-signature-256")
            )
        except UnknownTenantError:
            raise HTTPException(404, "unknown tenant") from None
        except SignatureError as exc:
            raise HTTPException(401, str(exc)) from None
        return {
            "published": accepted.published,
            "duplicates": accepted.duplicates,
            "dead_lettered": accepted.dead_lettered,
        }

    return router
