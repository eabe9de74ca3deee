"""The API's guard: every route but the public ones needs a bearer token, and a role that
allows the route's action on the tenant in its path (operators: on any tenant)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from taskpilot.analytics.auth import TokenVerifier
from taskpilot.analytics.domain import Action, Principal
from taskpilot.contracts import TenantId

_bearer = HTTPBearer(auto_error=False, description="A JWT of the OIDC provider or local issuer")


class Guard:
    def __init__(self, verifier: TokenVerifier):
        self._verifier = verifier

        async def principal(
            request: Request,
            credentials: HTTPAuthorizationCredentials | None = Security(_bearer),  # noqa: B008
        ) -> Principal:
            found = await verifier.principal(credentials.credentials if credentials else None)
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
