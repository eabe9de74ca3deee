"""API keys of machine clients, managed by a tenant's owner: created (the secret shown once),
listed without secrets, revoked. The keys themselves live in the shared tenant directory
(:mod:`taskpilot.tenancy.api_keys`), where every service verifies them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from taskpilot.tenancy import TenantDirectory
from taskpilot.tenancy.access import Role
from taskpilot.tenancy.api_keys import ApiKey, ApiKeyStore


class NewApiKey(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="What the key is for")
    roles: list[Literal["owner", "agent"]] = Field(
        default=["agent"], min_length=1, max_length=2, description="owner and/or agent"
    )


class CreatedApiKey(ApiKey):
    key: str = Field(description="The key itself: shown this once, stored only as a hash")


class ApiKeys:
    def __init__(self, directory: TenantDirectory, store: ApiKeyStore):
        self._directory = directory
        self._store = store

    async def create(self, tenant_id: str, new: NewApiKey, created_by: str) -> CreatedApiKey:
        await self._directory.get(tenant_id)  # UnknownTenantError for no such tenant
        roles = frozenset(Role(r) for r in new.roles)
        created, key = await self._store.create(tenant_id, new.name, roles, created_by)
        return CreatedApiKey(**created.model_dump(), key=key)

    async def listed(self, tenant_id: str) -> list[ApiKey]:
        return await self._store.keys(tenant_id)

    async def revoke(self, tenant_id: str, key_id: str) -> None:
        await self._store.revoke(tenant_id, key_id)
