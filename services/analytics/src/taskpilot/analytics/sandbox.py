"""The sandbox chat: write to a tenant as a WhatsApp lead from the dashboard, through the real
path (a webhook signed with the tenant's app secret → ingest → … → the Graph API sandbox).

Only where the Graph API is the local sandbox (the embedded default): against the real Graph
API the replies would go to a phone number nobody owns.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel, Field

from taskpilot.analytics.domain import meta_signature, sandbox_webhook
from taskpilot.analytics.upstreams import Upstreams
from taskpilot.contracts import LeadId
from taskpilot.tenancy import TenantDirectory


class NoNumberError(Exception):
    """The tenant has no WhatsApp number connected yet (connect one, even a made-up one)."""


class SandboxMessage(BaseModel):
    lead: LeadId = Field(description="The lead's (made-up) WhatsApp number, digits")
    text: str = Field(min_length=1, max_length=4096)
    name: str = Field(default="Sandbox lead", max_length=100)


class Sandbox:
    def __init__(self, directory: TenantDirectory, upstreams: Upstreams):
        self._directory = directory
        self._upstreams = upstreams

    @property
    def enabled(self) -> bool:
        return self._upstreams.configured("sandbox")

    async def send(self, tenant_id: str, message: SandboxMessage) -> dict[str, Any]:
        tenant = await self._directory.get(tenant_id)
        if not tenant.phone_number_ids:
            raise NoNumberError(tenant_id)
        wamid = "wamid.SANDBOX" + uuid.uuid4().hex.upper()
        body = sandbox_webhook(
            tenant.phone_number_ids[0],
            message.lead,
            message.text,
            wamid,
            message.name,
            int(time.time()),
        )
        signature = meta_signature(body, tenant.secrets.app_secret.get_secret_value())
        response = await self._upstreams.call(
            "ingest",
            "POST",
            f"/webhooks/whatsapp/{tenant_id}",
            content=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
        )
        return {"wamid": wamid, "ingest_status": response.status_code, **_json(response)}

    async def received(
        self, tenant_id: str, lead: str, after: int, wait: float
    ) -> list[dict[str, Any]]:
        """What the lead's phone got from this tenant's numbers (long-polls up to ``wait``)."""
        tenant = await self._directory.get(tenant_id)
        response = await self._upstreams.call(
            "sandbox",
            "GET",
            "/_sandbox/messages",
            params={"to": lead, "after": after, "wait": min(wait, 25.0)},
            timeout=30.0,
        )
        numbers = set(tenant.phone_number_ids)
        return [
            {k: m[k] for k in ("seq", "received_at", "to", "type", "text", "wamid")}
            for m in response.json()
            if m.get("phone_number_id") in numbers
        ]


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
