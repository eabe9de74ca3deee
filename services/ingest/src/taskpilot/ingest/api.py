"""Ingest's HTTP edge: Meta's webhook (verification GET and signed POST).

The signed POST is the hot path: Meta delivers every message and status through it, and its ack
must stay fast under load. :class:`IngestHttp` serves it as plain ASGI ahead of FastAPI, whose
routing, dependency solving and per-request telemetry cost several times the webhook's own work
(signature, parsing, publish); its OpenAPI description is in :mod:`taskpilot.ingest.openapi`.
Every other route is ordinary FastAPI. The webhook's trace starts at the service's "whatsapp
webhook" span."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from taskpilot.contracts import TenantId
from taskpilot.ingest.openapi import WEBHOOK_POST_OPENAPI, WEBHOOK_SCHEMAS
from taskpilot.ingest.service import WEBHOOK_ACK_SECONDS, SignatureError, WebhookService
from taskpilot.tenancy import UnknownTenantError

WEBHOOK_PATH = "/webhooks/whatsapp/{tenant_id}"
_WEBHOOK_PREFIX = "/webhooks/whatsapp/"
_TENANT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ACK_SECONDS = {
    outcome: WEBHOOK_ACK_SECONDS.labels(outcome=outcome)
    for outcome in (
        "accepted",
        "bad_signature",
        "unknown_tenant",
        "too_large",
        "invalid_tenant",
        "error",
    )
}


class BodyTooLargeError(Exception):
    pass


def verification_router(service: WebhookService) -> APIRouter:
    router = APIRouter(tags=["whatsapp"])

    @router.get(WEBHOOK_PATH, response_class=PlainTextResponse)
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

    return router


class WebhookPost:
    """``POST /webhooks/whatsapp/{tenant_id}`` as an ASGI app: 200 once every update in the
    body is stored on the bus; 401 bad signature, 404 unknown tenant, 413 body too large,
    422 a tenant id that cannot be one."""

    def __init__(self, service: WebhookService, max_body_bytes: int):
        self._service = service
        self._limit = max_body_bytes

    async def __call__(self, tenant_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        outcome: str | None = "error"
        try:
            outcome = await self._answer(tenant_id, scope, receive, send)
        finally:
            if outcome is not None:  # None: the client left before sending its body
                _ACK_SECONDS[outcome].observe(time.perf_counter() - started)

    async def _answer(
        self, tenant_id: str, scope: Scope, receive: Receive, send: Send
    ) -> str | None:
        """Answer the POST; returns the outcome for the ack latency histogram."""
        if not _TENANT.fullmatch(tenant_id):
            await _respond(send, 422, {"detail": "tenant_id must be 1-64 of A-Z a-z 0-9 _ -"})
            return "invalid_tenant"
        signature: str | None = None
        declared = b""
        for name, value in scope["headers"]:
            if name == b"x-hub-signature-256":
                signature = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
        try:
            if declared.isdigit() and int(declared) > self._limit:
                raise BodyTooLargeError
            raw = await _read_body(receive, self._limit)
        except BodyTooLargeError:
            await _respond(send, 413, {"detail": f"body larger than {self._limit} bytes"})
            return "too_large"
        if raw is None:
            return None  # the client went away before sending the body: nobody to answer
        try:
            accepted = await self._service.accept(tenant_id, raw, signature)
        except UnknownTenantError:
            await _respond(send, 404, {"detail": "unknown tenant"})
            return "unknown_tenant"
        except SignatureError as exc:
            await _respond(send, 401, {"detail": str(exc)})
            return "bad_signature"
        body = b'{"published":%d,"duplicates":%d,"dead_lettered":%d}' % (
            accepted.published,
            accepted.duplicates,
            accepted.dead_lettered,
        )
        await _send(send, 200, body)
        return "accepted"


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: dict[str, Any]) -> None:
    await _send(send, status, json.dumps(body, separators=(",", ":")).encode())


async def _send(send: Send, status: int, payload: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class IngestHttp(FastAPI):
    """FastAPI for everything but the webhook POST, which :class:`WebhookPost` serves first."""

    def __init__(self, service: WebhookService, max_body_bytes: int, **kwargs: Any):
        super().__init__(**kwargs)
        self._webhook = WebhookPost(service, max_body_bytes)
        self.include_router(verification_router(service))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            tenant_id = _webhook_tenant(scope)
            if tenant_id is not None:
                await self._webhook(tenant_id, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            schema["paths"].setdefault(WEBHOOK_PATH, {})["post"] = WEBHOOK_POST_OPENAPI
            schema.setdefault("components", {}).setdefault("schemas", {}).update(WEBHOOK_SCHEMAS)
        return self.openapi_schema  # type: ignore[return-value]


def _webhook_tenant(scope: Scope) -> str | None:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if not path.startswith(_WEBHOOK_PREFIX):
        return None
    tenant_id = path[len(_WEBHOOK_PREFIX) :]
    return tenant_id if tenant_id and "/" not in tenant_id else None
