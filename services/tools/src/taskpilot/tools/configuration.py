"""Configuration use cases: which tools a tenant enables, its booking rules, its provider
connections and outgoing webhook endpoints. Secrets go in, sealed; they never come out."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, HttpUrl

from taskpilot.tools import domain
from taskpilot.tools.availability import BookingPolicy
from taskpilot.tools.repository import ToolsRepository
from taskpilot.tools.webhooks import PUBLIC_EVENTS, SubscriptionCache


class ToolSettingsIn(BaseModel):
    enabled_tools: list[str] = []
    booking_policy: BookingPolicy = BookingPolicy()


class ConnectionIn(BaseModel):
    provider: str
    settings: dict[str, Any] = {}
    secrets: dict[str, Any] = Field(default={}, description="Write-only: never returned")


class WebhookEndpointIn(BaseModel):
    url: HttpUrl
    event_types: list[str] = Field(min_length=1)
    secret: str = Field(min_length=16, description="Signs deliveries; write-only")


class InvalidConfigurationError(ValueError):
    pass


class NotFoundError(LookupError):
    pass


class ToolsConfiguration:
    def __init__(self, repo: ToolsRepository, subscriptions: SubscriptionCache | None = None):
        self._repo = repo
        self._subscriptions = subscriptions

    async def save_settings(self, tenant_id: str, body: ToolSettingsIn) -> None:
        unknown = set(body.enabled_tools) - set(domain.KNOWN_TOOLS)
        if unknown:
            raise InvalidConfigurationError(f"unknown tools: {sorted(unknown)}")
        await self._repo.save_settings(tenant_id, body.enabled_tools, body.booking_policy)

    async def settings(self, tenant_id: str) -> ToolSettingsIn:
        config = await self._repo.load_config(tenant_id)
        return ToolSettingsIn(enabled_tools=sorted(config.enabled), booking_policy=config.policy)

    async def runnable_tool_schemas(self, tenant_id: str) -> list[dict[str, Any]]:
        config = await self._repo.load_config(tenant_id)
        runnable = config.enabled & domain.available_tools(config.connected)
        return domain.tool_schemas(runnable)

    async def connect(self, tenant_id: str, kind: str, body: ConnectionIn) -> None:
        """Store a validated connection; ``kind`` is calendar, payments or workflow:<name>."""
        models = domain.CONNECTION_MODELS.get(body.provider)
        expected = kind.split(":", 1)[0].replace("workflow", "workflows")
        if models is None or domain.KIND_OF[body.provider] != expected:
            raise InvalidConfigurationError(f"provider {body.provider!r} cannot serve {kind}")
        settings_model, secrets_model = models
        try:
            settings = settings_model.model_validate({**body.settings, "provider": body.provider})
            secrets = secrets_model.model_validate(body.secrets)
        except ValueError as exc:
            raise InvalidConfigurationError(str(exc)) from None
        await self._repo.save_connection(
            tenant_id,
            kind,
            body.provider,
            settings.model_dump(mode="json"),
            secrets.model_dump(mode="json"),
        )

    async def disconnect(self, tenant_id: str, kind: str) -> None:
        if not await self._repo.delete_connection(tenant_id, kind):
            raise NotFoundError(kind)

    async def connections(self, tenant_id: str) -> list[dict[str, Any]]:
        return await self._repo.describe_connections(tenant_id)

    async def rotate_secrets(self, tenant_id: str) -> int:
        return await self._repo.reseal(tenant_id)

    async def save_endpoint(
        self, tenant_id: str, endpoint_id: str, body: WebhookEndpointIn
    ) -> None:
        unknown = set(body.event_types) - {*PUBLIC_EVENTS, "*"}
        if unknown:
            raise InvalidConfigurationError(
                f"unknown event types {sorted(unknown)}; known: {', '.join(PUBLIC_EVENTS)}"
            )
        await self._repo.save_endpoint(
            tenant_id, endpoint_id, str(body.url), body.event_types, body.secret
        )
        self._endpoints_changed(tenant_id)

    async def endpoints(self, tenant_id: str) -> list[dict[str, Any]]:
        return [
            {"id": e.id, "url": e.url, "event_types": e.event_types}
            for e in await self._repo.endpoints(tenant_id)
        ]

    async def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> None:
        deleted = await self._repo.delete_endpoint(tenant_id, endpoint_id)
        self._endpoints_changed(tenant_id)
        if not deleted:
            raise NotFoundError(endpoint_id)

    def _endpoints_changed(self, tenant_id: str) -> None:
        if self._subscriptions is not None:
            self._subscriptions.invalidate(tenant_id)
