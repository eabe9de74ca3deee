"""API keys for machine clients (owners only): ``Authorization: Bearer tp_...`` or
``X-API-Key: tp_...`` on every service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from taskpilot.analytics.api.security import Guard
from taskpilot.analytics.keys import ApiKeys, CreatedApiKey, NewApiKey
from taskpilot.contracts import TenantId
from taskpilot.tenancy.access import Action, Principal
from taskpilot.tenancy.api_keys import ApiKey

KeyId = Annotated[str, Path(pattern=r"^[a-f0-9]{16}$")]


def api_keys_router(keys: ApiKeys, guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/v1/tenants/{tenant_id}/api-keys", tags=["api keys"])
    manage = guard.allows(Action.MANAGE_API_KEYS)

    @router.post("", status_code=201)
    async def create_api_key(
        tenant_id: TenantId, new: NewApiKey, who: Principal = manage
    ) -> CreatedApiKey:
        """A new key for this tenant; ``key`` is in this answer only."""
        return await keys.create(tenant_id, new, who.agent)

    @router.get("", dependencies=[manage])
    async def list_api_keys(tenant_id: TenantId) -> list[ApiKey]:
        """Every key of the tenant, revoked ones included; never a secret."""
        return await keys.listed(tenant_id)

    @router.delete("/{key_id}", status_code=204, dependencies=[manage])
    async def revoke_api_key(tenant_id: TenantId, key_id: KeyId) -> None:
        """Revoked at once: the next request with the key is refused by every service."""
        await keys.revoke(tenant_id, key_id)

    return router
