"""Onboarding use cases: create a tenant, connect its WhatsApp number, its business profile,
its budget. Tenants are written to the shared tenant directory (secrets sealed there), the
one place every service reads them from: inference enforces the budget and offers the enabled
tools it finds in the profile there."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from pydantic import BaseModel, Field, SecretStr

from taskpilot.analytics.domain import webhook_url
from taskpilot.analytics.repository import OperatorStore
from taskpilot.contracts import TenantId
from taskpilot.tenancy import (
    BusinessProfile,
    Tenant,
    TenantDirectory,
    TenantSecrets,
    UnknownTenantError,
)

log = logging.getLogger(__name__)


class TenantExistsError(Exception):
    """A tenant with this id exists already."""


class NumberTakenError(Exception):
    """The WhatsApp number is connected to another tenant."""


class NewTenant(BaseModel):
    id: TenantId
    name: str = Field(min_length=1, max_length=200)
    profile: BusinessProfile | None = None


class WhatsAppNumber(BaseModel):
    phone_number_id: str = Field(pattern=r"^[0-9]{5,32}$")
    access_token: SecretStr = Field(min_length=1)
    app_secret: SecretStr = Field(min_length=1)
    verify_token: SecretStr = Field(min_length=8, max_length=200)


class Budget(BaseModel):
    monthly_usd: float | None = Field(
        default=None, ge=0, description="None: the inference service's configured default"
    )
    near_share: float = Field(default=0.8, gt=0, le=1)

    @classmethod
    def of(cls, profile: BusinessProfile) -> Budget:
        return cls(monthly_usd=profile.monthly_budget_usd, near_share=profile.budget_near_share)


SET_ELSEWHERE = ("enabled_tools", "monthly_budget_usd", "budget_near_share")
"""Profile fields with endpoints of their own: a profile update that leaves them out keeps
them (an owner editing the hours must not switch tools off or lift the budget)."""


class Onboarding:
    def __init__(self, directory: TenantDirectory, operator: OperatorStore, webhook_base: str):
        self._directory = directory
        self._operator = operator
        self._webhook_base = webhook_base

    async def create(self, new: NewTenant) -> dict[str, Any]:
        try:
            await self._directory.get(new.id)
        except UnknownTenantError:
            pass
        else:
            raise TenantExistsError(new.id)
        # Until a number is connected, nothing can be signed or verified for this tenant.
        unguessable = TenantSecrets(
            app_secret=SecretStr(secrets.token_urlsafe(32)),
            access_token=SecretStr(""),
            verify_token=SecretStr(secrets.token_urlsafe(32)),
        )
        profile = new.profile or BusinessProfile(name=new.name)
        await self._directory.upsert(
            Tenant(id=new.id, name=new.name, profile=profile, secrets=unguessable)
        )
        return await self.view(new.id)

    async def view(self, tenant_id: str) -> dict[str, Any]:
        tenant = await self._directory.get(tenant_id)
        return {
            "id": tenant.id,
            "name": tenant.name,
            "profile": tenant.profile.model_dump(),
            "phone_number_ids": tenant.phone_number_ids,
            "whatsapp_connected": bool(tenant.phone_number_ids),
            "webhook_url": webhook_url(self._webhook_base, tenant.id),
            "budget": Budget.of(tenant.profile).model_dump(),
        }

    async def connect_whatsapp(self, tenant_id: str, number: WhatsAppNumber) -> dict[str, Any]:
        tenant = await self._directory.get(tenant_id)
        owner = await self._directory.tenant_for_number(number.phone_number_id)
        if owner is not None and owner != tenant_id:
            raise NumberTakenError(number.phone_number_id)
        numbers = list(dict.fromkeys([*tenant.phone_number_ids, number.phone_number_id]))
        await self._directory.upsert(
            tenant.model_copy(
                update={
                    "secrets": TenantSecrets(
                        app_secret=number.app_secret,
                        access_token=number.access_token,
                        verify_token=number.verify_token,
                    ),
                    "phone_number_ids": numbers,
                }
            )
        )
        return {
            "phone_number_id": number.phone_number_id,
            "webhook_url": webhook_url(self._webhook_base, tenant_id),
            "verify_token": number.verify_token.get_secret_value(),
            "subscribe_fields": ["messages"],
            "next": (
                "In Meta's App Dashboard → WhatsApp → Configuration, set the Callback URL to "
                "webhook_url and the Verify token to verify_token, then subscribe to 'messages'."
            ),
        }

    async def set_profile(self, tenant_id: str, profile: BusinessProfile) -> dict[str, Any]:
        tenant = await self._directory.get(tenant_id)
        kept = {
            name: getattr(tenant.profile, name)
            for name in SET_ELSEWHERE
            if name not in profile.model_fields_set
        }
        profile = profile.model_copy(update=kept)
        await self._directory.upsert(tenant.model_copy(update={"profile": profile}))
        return await self.view(tenant_id)

    async def set_enabled_tools(self, tenant_id: str, tools: list[str]) -> None:
        tenant = await self._directory.get(tenant_id)
        profile = tenant.profile.model_copy(update={"enabled_tools": tools})
        await self._directory.upsert(tenant.model_copy(update={"profile": profile}))

    async def budget(self, tenant_id: str) -> Budget:
        return Budget.of((await self._directory.get(tenant_id)).profile)

    async def set_budget(self, tenant_id: str, budget: Budget, actor: str) -> Budget:
        """The budget goes into the tenant's profile, where inference reads it (within its
        directory cache's lifetime); ``actor`` is logged, the profile keeps no history."""
        tenant = await self._directory.get(tenant_id)
        profile = tenant.profile.model_copy(
            update={
                "monthly_budget_usd": budget.monthly_usd,
                "budget_near_share": budget.near_share,
            }
        )
        await self._directory.upsert(tenant.model_copy(update={"profile": profile}))
        log.info("tenant %s budget set to %s by %s", tenant_id, budget.monthly_usd, actor)
        return budget

    async def tenants(self) -> list[str]:
        return await self._operator.tenant_ids()
