"""Every service's HTTP door: settings for where token keys come from, the guard that turns a
credential into an allowed principal, and the statuses of refusals (401, 403, 503).

A route declares the action it performs (``guard.allows(Action.READ)``) and the guard checks
the caller's role allows it on the tenant in the path (operators: any tenant). Credentials come
as ``Authorization: Bearer <JWT or tp_ API key>`` or ``X-API-Key: tp_...``. Only the Meta and
Stripe webhooks (verified by signature) and the health and metrics routes stay public.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool
from pydantic import AliasChoices, Field

from taskpilot.contracts import TenantId
from taskpilot.runtime.settings import CommonSettings
from taskpilot.tenancy.access import Action, ForbiddenError, NotAuthenticatedError, Principal
from taskpilot.tenancy.api_keys import ApiKeyStore
from taskpilot.tenancy.tokens import (
    IdentityProviderUnavailableError,
    KeySource,
    RemoteKeys,
    StaticKeys,
    TokenVerifier,
)

_bearer = HTTPBearer(
    auto_error=False, description="A JWT (OIDC provider or local issuer) or an API key (tp_...)"
)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (tp_...)")


def _analytics_jwks() -> str:
    port = os.environ.get("TASKPILOT_ANALYTICS_HTTP_PORT", "8005")
    return f"http://127.0.0.1:{port}/.well-known/jwks.json"


def _auth(name: str) -> AliasChoices:
    """``TASKPILOT_AUTH_<NAME>``, else analytics' setting of the same name (one configuration)."""
    return AliasChoices(f"TASKPILOT_AUTH_{name}", f"TASKPILOT_ANALYTICS_{name}")


class GuardedSettings(CommonSettings):
    """Settings of a service whose HTTP API needs a token (``TASKPILOT_AUTH_*``, shared)."""

    local_issuer: bool = Field(
        default=True,
        validation_alias=_auth("LOCAL_ISSUER"),
        description="Accept tokens of the built-in local issuer (the embedded default)",
    )
    local_jwks: str | None = Field(
        default=None,
        validation_alias="TASKPILOT_AUTH_JWKS",
        description="The local issuer's key set inline (JSON); wins over local_jwks_url",
    )
    local_jwks_url: str = Field(
        default_factory=_analytics_jwks,
        validation_alias="TASKPILOT_AUTH_JWKS_URL",
        description="Where the local issuer publishes its key set (analytics' "
        "/.well-known/jwks.json on TASKPILOT_ANALYTICS_HTTP_PORT)",
    )
    oidc_issuer: str | None = Field(default=None, validation_alias=_auth("OIDC_ISSUER"))
    oidc_audience: str | None = Field(default=None, validation_alias=_auth("OIDC_AUDIENCE"))
    oidc_jwks_url: str | None = Field(default=None, validation_alias=_auth("OIDC_JWKS_URL"))
    oidc_algorithms: list[str] = Field(
        default=["RS256", "ES256"], validation_alias=_auth("OIDC_ALGORITHMS")
    )
    tenant_claim: str = Field(default="tenant_id", validation_alias=_auth("TENANT_CLAIM"))
    roles_claim: str = Field(default="roles", validation_alias=_auth("ROLES_CLAIM"))


def local_keys(settings: GuardedSettings) -> KeySource | None:
    if not settings.local_issuer:
        return None
    if settings.local_jwks:
        return StaticKeys(json.loads(settings.local_jwks))
    return RemoteKeys(settings.local_jwks_url)


async def verifier_for(settings: GuardedSettings, pool: AsyncConnectionPool) -> TokenVerifier:
    """The verifier a sibling service checks callers with (API keys in ``pool``'s database)."""
    api_keys = ApiKeyStore(pool)
    await api_keys.ensure_schema()
    return TokenVerifier(
        local_keys=local_keys(settings),
        oidc_issuer=settings.oidc_issuer,
        oidc_audience=settings.oidc_audience,
        oidc_jwks_url=settings.oidc_jwks_url,
        oidc_algorithms=settings.oidc_algorithms,
        tenant_claim=settings.tenant_claim,
        roles_claim=settings.roles_claim,
        api_keys=api_keys,
    )


class Guard:
    """FastAPI dependencies that authenticate the caller and authorise the route's action."""

    def __init__(self, verifier: TokenVerifier):
        async def principal(
            request: Request,
            credentials: HTTPAuthorizationCredentials | None = Security(_bearer),  # noqa: B008
            api_key: str | None = Security(_api_key),
        ) -> Principal:
            presented = credentials.credentials if credentials else api_key
            found = await verifier.principal(presented)
            request.state.principal = found
            return found

        self.principal: Callable[..., Awaitable[Principal]] = principal

    def allows(self, action: Action) -> Any:
        """A dependency: the caller, allowed to do ``action`` on the path's tenant."""
        principal = self.principal

        async def allowed(
            tenant_id: TenantId,
            who: Principal = Depends(principal),  # noqa: B008
        ) -> Principal:
            who.require(action, tenant_id)
            return who

        return Depends(allowed)

    def signed_in(self) -> Any:
        return Depends(self.principal)


AUTH_STATUSES: dict[type[Exception], int] = {
    NotAuthenticatedError: 401,
    ForbiddenError: 403,
    IdentityProviderUnavailableError: 503,
}


def add_auth_errors(http: FastAPI) -> None:
    """Refusals as JSON with the reason (401 carries ``WWW-Authenticate: Bearer``)."""
    for error, status in AUTH_STATUSES.items():

        async def handler(request: Request, exc: Exception, status: int = status) -> JSONResponse:
            detail = str(exc) or type(exc).__name__
            if status == 503:
                detail = "the identity provider cannot be reached; try again"
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return JSONResponse({"detail": detail}, status_code=status, headers=headers)

        http.add_exception_handler(error, handler)


def forwarded(principal: Principal) -> dict[str, str]:
    """Headers that carry the caller's own credential on to a sibling service."""
    return {"Authorization": f"Bearer {principal.credential}"} if principal.credential else {}
