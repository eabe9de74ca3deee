"""The dashboard API (FastAPI) and the web dashboard's static files.

Named exceptions become HTTP statuses here, and only here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from taskpilot.analytics.api.dashboard import dashboard_router, me_router
from taskpilot.analytics.api.dead_letters import dead_letters_router
from taskpilot.analytics.api.gateway import conversation_router, knowledge_router, sandbox_router
from taskpilot.analytics.api.keys import api_keys_router
from taskpilot.analytics.api.onboarding import onboarding_router
from taskpilot.analytics.api.security import Guard
from taskpilot.analytics.auth import (
    IdentityProviderUnavailableError,
    LocalIssuer,
    TokenVerifier,
)
from taskpilot.analytics.domain import ForbiddenError, NotAuthenticatedError, NotReplayableError
from taskpilot.analytics.keys import ApiKeys
from taskpilot.analytics.live import ChangeFeed
from taskpilot.analytics.onboarding import NumberTakenError, Onboarding, TenantExistsError
from taskpilot.analytics.sandbox import NoNumberError, Sandbox
from taskpilot.analytics.service import (
    BadCursorError,
    ConversationNotFoundError,
    Dashboard,
    DeadLetterClosedError,
    DeadLetterNotFoundError,
    DeadLetters,
)
from taskpilot.analytics.upstreams import NoSuchPathError, Upstreams, UpstreamUnavailableError
from taskpilot.runtime.bus import PublishError
from taskpilot.runtime.http_errors import add_input_errors
from taskpilot.tenancy import UnknownTenantError
from taskpilot.tenancy.api_keys import ApiKeyNotFoundError

STATUSES: dict[type[Exception], int] = {
    NotAuthenticatedError: 401,
    ForbiddenError: 403,
    ConversationNotFoundError: 404,
    DeadLetterNotFoundError: 404,
    UnknownTenantError: 404,
    ApiKeyNotFoundError: 404,
    NoSuchPathError: 404,
    BadCursorError: 400,
    TenantExistsError: 409,
    NumberTakenError: 409,
    DeadLetterClosedError: 409,
    NotReplayableError: 409,
    NoNumberError: 409,
    UpstreamUnavailableError: 502,
    IdentityProviderUnavailableError: 503,
    PublishError: 503,
}
MESSAGES: dict[type[Exception], str] = {
    ConversationNotFoundError: "no such conversation",
    DeadLetterNotFoundError: "no such dead letter",
    UnknownTenantError: "no such tenant",
    ApiKeyNotFoundError: "no such API key",
    NoSuchPathError: "no such resource",
    TenantExistsError: "the tenant exists already",
    NumberTakenError: "this WhatsApp number is connected to another tenant",
    NoNumberError: "connect a WhatsApp number first (any made-up id works in the sandbox)",
    IdentityProviderUnavailableError: "the identity provider cannot be reached; try again",
}


@dataclass
class UseCases:
    dashboard: Dashboard
    dead_letters: DeadLetters
    onboarding: Onboarding
    sandbox: Sandbox
    upstreams: Upstreams
    feed: ChangeFeed
    api_keys: ApiKeys


def build_http(
    use: UseCases,
    verifier: TokenVerifier,
    local: LocalIssuer | None,
    browser_login: dict[str, str] | None = None,
) -> FastAPI:
    http = FastAPI(
        title="TaskPilot dashboard API",
        version="1.0.0",
        description="Every route needs a bearer JWT (OIDC provider or the local issuer: "
        "`taskpilot token --tenant demo --role owner`) or an API key (`tp_...`, as bearer or "
        "`X-API-Key`) whose tenant matches the path; operators may act on any tenant.",
    )
    add_exception_handlers(http)
    guard = Guard(verifier)
    http.include_router(me_router(guard))
    http.include_router(onboarding_router(use.onboarding, use.upstreams, guard))
    http.include_router(dashboard_router(use.dashboard, use.feed, guard))
    http.include_router(conversation_router(use.upstreams, guard))
    http.include_router(dead_letters_router(use.dead_letters, guard))
    http.include_router(knowledge_router(use.upstreams, guard))
    http.include_router(sandbox_router(use.sandbox, guard))
    http.include_router(api_keys_router(use.api_keys, guard))

    @http.get("/v1/auth/config", tags=["auth"])
    async def auth_config() -> dict[str, Any]:
        """Public: how the web dashboard signs people in, and what this installation offers."""
        return {
            "local_issuer": local is not None,
            "oidc": browser_login,
            "sandbox": use.sandbox.enabled,
        }

    if local is not None:

        @http.get("/.well-known/jwks.json", tags=["auth"])
        async def jwks() -> dict[str, Any]:
            """The local issuer's public key."""
            return local.jwks()

    return http


def add_exception_handlers(http: FastAPI) -> None:
    add_input_errors(http)
    for error, status in STATUSES.items():

        async def handler(request: Request, exc: Exception, status: int = status) -> JSONResponse:
            detail = MESSAGES.get(type(exc)) or str(exc) or type(exc).__name__
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return JSONResponse({"detail": detail}, status_code=status, headers=headers)

        http.add_exception_handler(error, handler)


NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>TaskPilot</title>
<body style="font-family:system-ui;max-width:40rem;margin:3rem auto;line-height:1.5">
<h1>TaskPilot dashboard API</h1>
<p>The web dashboard is not built. It needs <a href="https://nodejs.org/">Node.js</a> 20 or
newer: install it (e.g. <code>apt-get install nodejs npm</code>, or from nodejs.org), then run
<code>make web</code> (<code>make run</code> builds it too when Node.js is present).</p>
<p>The API works without it: see <a href="/docs">/docs</a>. Get a token with
<code>taskpilot token --tenant demo --role owner</code>.</p></body>"""


class WebFiles:
    """The built dashboard, looked up per request (a build made after start is served), or a
    page that says how to build it."""

    def __init__(self, directory: Path | None):
        self._directory = directory
        self._static: StaticFiles | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._directory is not None and (self._directory / "index.html").is_file():
            if self._static is None:
                self._static = StaticFiles(directory=self._directory, html=True)
            await self._static(scope, receive, send)
            return
        status = 200 if scope.get("path") in ("", "/") else 404
        await HTMLResponse(NOT_BUILT, status_code=status)(scope, receive, send)


def mount_web(http: FastAPI, web_dir: Path | None) -> None:
    """Serve the dashboard at ``/`` (after every other route: the mount takes the rest)."""
    http.mount("/", WebFiles(web_dir), name="web")
