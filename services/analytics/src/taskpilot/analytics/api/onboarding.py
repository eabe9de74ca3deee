"""Onboarding: tenants, their WhatsApp number, business profile, budget, tools."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from taskpilot.analytics.api.gateway import relay
from taskpilot.analytics.api.security import Guard
from taskpilot.analytics.domain import Action, ForbiddenError, Principal, Role
from taskpilot.analytics.onboarding import Budget, NewTenant, Onboarding, WhatsAppNumber
from taskpilot.analytics.upstreams import Upstreams
from taskpilot.contracts import TenantId
from taskpilot.tenancy import BusinessProfile


def onboarding_router(onboarding: Onboarding, upstreams: Upstreams, guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/v1/tenants", tags=["onboarding"])
    read, configure = guard.allows(Action.READ), guard.allows(Action.CONFIGURE)
    signed_in = guard.signed_in()

    @router.get("")
    async def list_tenants(who: Principal = signed_in) -> list[str]:
        """Operators: every tenant. Everyone else: their own."""
        if who.is_operator:
            return await onboarding.tenants()
        return [who.tenant_id] if who.tenant_id else []

    @router.post("", status_code=201)
    async def create_tenant(new: NewTenant, who: Principal = signed_in) -> dict[str, Any]:
        """Operators create any tenant; an owner creates the one their token names."""
        if not (who.is_operator or (Role.OWNER in who.roles and who.tenant_id == new.id)):
            raise ForbiddenError(f"creating tenant {new.id!r} is not allowed")
        return await onboarding.create(new)

    @router.get("/{tenant_id}", dependencies=[read])
    async def get_tenant(tenant_id: TenantId) -> dict[str, Any]:
        """Profile, numbers and the webhook URL; never a secret."""
        return await onboarding.view(tenant_id)

    @router.put("/{tenant_id}/whatsapp", dependencies=[configure])
    async def connect_whatsapp(tenant_id: TenantId, number: WhatsAppNumber) -> dict[str, Any]:
        """Connect a number; the answer has the exact webhook URL to paste into Meta."""
        return await onboarding.connect_whatsapp(tenant_id, number)

    @router.put("/{tenant_id}/profile", dependencies=[configure])
    async def set_profile(tenant_id: TenantId, profile: BusinessProfile) -> dict[str, Any]:
        return await onboarding.set_profile(tenant_id, profile)

    @router.get("/{tenant_id}/budget", dependencies=[read])
    async def get_budget(tenant_id: TenantId) -> Budget:
        return await onboarding.budget(tenant_id)

    @router.put("/{tenant_id}/budget")
    async def set_budget(tenant_id: TenantId, budget: Budget, who: Principal = configure) -> Budget:
        """The monthly model budget, kept in the tenant's profile in the tenant directory:
        inference enforces it from there, the summary shows it against the month's spend."""
        return await onboarding.set_budget(tenant_id, budget, who.agent)

    # -- tools (the tools service keeps the configuration and the sealed credentials) -------

    @router.get("/{tenant_id}/tools/settings")
    async def tool_settings(tenant_id: TenantId, who: Principal = read) -> Any:
        return relay(
            await upstreams.call(
                "tools", "GET", f"/v1/tenants/{tenant_id}/tools/settings", caller=who
            )
        )

    @router.put("/{tenant_id}/tools/settings")
    async def set_tool_settings(
        tenant_id: TenantId, body: dict[str, Any], who: Principal = configure
    ) -> Any:
        """Enable tools: the tools service's settings, and the profile's offer to the model."""
        answer = await upstreams.call(
            "tools", "PUT", f"/v1/tenants/{tenant_id}/tools/settings", json=body, caller=who
        )
        if answer.is_success:
            await onboarding.set_enabled_tools(tenant_id, list(body.get("enabled_tools") or []))
        return relay(answer)

    @router.get("/{tenant_id}/tools/connections")
    async def tool_connections(tenant_id: TenantId, who: Principal = read) -> Any:
        return relay(
            await upstreams.call(
                "tools", "GET", f"/v1/tenants/{tenant_id}/tools/connections", caller=who
            )
        )

    @router.put("/{tenant_id}/tools/connections/{kind}")
    async def connect_tool(
        tenant_id: TenantId, kind: str, body: dict[str, Any], who: Principal = configure
    ) -> Any:
        """``calendar`` (CalDAV, Google) or ``payments`` (Stripe); secrets are write-only."""
        if kind not in ("calendar", "payments"):
            return relay(None, 404, {"detail": "kind must be calendar or payments"})
        return relay(
            await upstreams.call(
                "tools",
                "PUT",
                f"/v1/tenants/{tenant_id}/tools/connections/{kind}",
                json=body,
                caller=who,
            )
        )

    @router.delete("/{tenant_id}/tools/connections/{kind}")
    async def disconnect_tool(tenant_id: TenantId, kind: str, who: Principal = configure) -> Any:
        return relay(
            await upstreams.call(
                "tools", "DELETE", f"/v1/tenants/{tenant_id}/tools/connections/{kind}", caller=who
            )
        )

    return router
