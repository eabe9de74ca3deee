"""Workflow triggers (n8n or any webhook) and the outgoing-webhook sender."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import jwt

from taskpilot.tools.adapters.errors import ProviderUnavailableError, raise_for_status
from taskpilot.tools.adapters.targets import ensure_target
from taskpilot.tools.signing import signature_header


@dataclass(frozen=True)
class WorkflowRequest:
    url: str
    payload: dict[str, Any]
    idempotency_key: str
    auth: str = "none"
    header_name: str = "X-TaskPilot-Auth"
    secret: str | None = None
    subject: str = ""


class WorkflowTrigger(Protocol):
    """Starts a workflow (n8n or any webhook-triggered automation) and returns its answer.

    Authenticates with a shared secret in a header, or with a short-lived HS256 JWT signed by
    the secret (``Authorization: Bearer``). Sends ``Idempotency-Key`` so a receiver can drop a
    repeated trigger.
    """

    async def trigger(self, request: WorkflowRequest) -> dict[str, Any]: ...


class HttpWorkflowTrigger:
    def __init__(
        self, http: httpx.AsyncClient, *, allow_private: bool = False, jwt_ttl_s: int = 300
    ):
        self._http = http
        self._allow_private = allow_private
        self._ttl = jwt_ttl_s

    def _auth_headers(self, request: WorkflowRequest) -> dict[str, str]:
        if request.auth == "none" or not request.secret:
            return {}
        if request.auth == "header":
            return {request.header_name: request.secret}
        now = int(time.time())
        claims = {"iss": "taskpilot", "sub": request.subject, "iat": now, "exp": now + self._ttl}
        return {"Authorization": f"Bearer {jwt.encode(claims, request.secret, 'HS256')}"}

    async def trigger(self, request: WorkflowRequest) -> dict[str, Any]:
        await ensure_target("workflow", request.url, self._allow_private)
        try:
            response = await self._http.post(
                request.url,
                json=request.payload,
                headers={"Idempotency-Key": request.idempotency_key, **self._auth_headers(request)},
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailableError("workflow", repr(exc)) from exc
        raise_for_status("workflow", response.status_code, response.text)
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = {"text": response.text[:2000]}
        return {"status": response.status_code, "response": body}


class WebhookSender:
    """POSTs one signed event to a tenant's endpoint (``TaskPilot-Signature: t=..,v1=..``)."""

    def __init__(self, http: httpx.AsyncClient, *, allow_private: bool = False):
        self._http = http
        self._allow_private = allow_private

    async def send(
        self, url: str, secret: str, delivery_id: str, event_type: str, body: bytes
    ) -> None:
        await ensure_target("webhook", url, self._allow_private)
        timestamp = int(time.time())
        try:
            response = await self._http.post(
                url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "TaskPilot-Signature": signature_header(secret, timestamp, body),
                    "TaskPilot-Delivery-Id": delivery_id,
                    "TaskPilot-Event-Type": event_type,
                },
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailableError("webhook", repr(exc)) from exc
        if response.status_code >= 300:
            raise ProviderUnavailableError("webhook", f"HTTP {response.status_code}")
