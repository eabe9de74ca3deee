"""Analytics settings (env prefix ``TASKPILOT_ANALYTICS_``).

The URLs of the sibling services default to what one host runs: their own port settings
(``TASKPILOT_<SERVICE>_HTTP_PORT``) on loopback, so ``taskpilot dev`` and the end-to-end tests
need no extra configuration. In a cluster, set them to the services' addresses.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from taskpilot.runtime.settings import CommonSettings

SIBLING_PORTS = {"conversation": 8001, "knowledge": 8003, "tools": 8004, "ingest": 8000}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _sibling(name: str) -> str:
    port = os.environ.get(f"TASKPILOT_{name.upper()}_HTTP_PORT", str(SIBLING_PORTS[name]))
    return f"http://127.0.0.1:{port}"


def _local_sandbox() -> str | None:
    # The Graph API stand-in is only ever on loopback; a real graph.facebook.com is no sandbox.
    base = os.environ.get("TASKPILOT_INGEST_GRAPH_API_BASE", "")
    return base.rstrip("/") if urlsplit(base).hostname in LOOPBACK else None


class AnalyticsSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TASKPILOT_ANALYTICS_", extra="ignore")

    http_port: int = 8005
    nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="CPU priority when analytics runs as its own process (a Unix nice "
        "increment; 0 keeps the priority it was started with). Its projections are background "
        "work: on a machine it shares with the other services they yield the cores to the "
        "reply path. Under bench/load.py at 12.6 msgs/s on 2 cores, webhook -> send took p50 "
        "60 / p95 104 / p99 150 ms at 0 and 46 / 59 / 72 ms at 10. Not applied by "
        "`taskpilot dev` (one process for every service); containers have their own CPU "
        "shares (compose gives analytics half).",
    )
    read_database_url: str | None = Field(
        default=None,
        description="A read replica for dashboard queries (default: DATABASE_URL). Projections, "
        "actions and live notifications always use the primary.",
    )
    # -- authentication -------------------------------------------------------------------
    oidc_issuer: str | None = Field(
        default=None, description="The OIDC provider's issuer (iss), e.g. https://x.auth0.com/"
    )
    oidc_audience: str | None = Field(default=None, description="The expected aud claim")
    oidc_jwks_url: str | None = Field(
        default=None,
        description="Default: the jwks_uri of {issuer}/.well-known/openid-configuration",
    )
    oidc_algorithms: list[str] = ["RS256", "ES256"]
    oidc_client_id: str | None = Field(
        default=None,
        description="A public (SPA) client of the provider: the web dashboard then signs people "
        "in with the authorization-code flow and PKCE",
    )
    oidc_scope: str = "openid profile email"
    tenant_claim: str = Field(
        default="tenant_id", description="Claim with the tenant; dotted paths reach nested claims"
    )
    roles_claim: str = Field(
        default="roles",
        description="Claim with the roles (a list or a string), e.g. "
        "realm_access.roles for Keycloak",
    )
    local_issuer: bool = Field(
        default=True,
        description="Accept tokens of the built-in issuer (key in {data_dir}/auth); for the "
        "embedded default. Turn off when an OIDC provider is configured.",
    )
    # -- sibling services (the dashboard's gateway) -----------------------------------------
    conversation_url: str = Field(default_factory=lambda: _sibling("conversation"))
    knowledge_url: str = Field(default_factory=lambda: _sibling("knowledge"))
    tools_url: str = Field(default_factory=lambda: _sibling("tools"))
    ingest_url: str = Field(default_factory=lambda: _sibling("ingest"))
    public_webhook_base: str | None = Field(
        default=None,
        description="Public base URL of ingest that Meta calls (default: ingest_url)",
    )
    sandbox_url: str | None = Field(
        default_factory=_local_sandbox,
        description="The Graph API sandbox, for the dashboard's sandbox chat (loopback only)",
    )
    web_dir: Path | None = Field(
        default=None, description="The built web dashboard (default: web/dist of the checkout)"
    )

    @model_validator(mode="after")
    def _defaults(self) -> AnalyticsSettings:
        if not self.public_webhook_base:
            self.public_webhook_base = self.ingest_url
        if self.web_dir is None:
            self.web_dir = default_web_dir()
        return self


def default_web_dir() -> Path:
    """``web/dist`` of the working directory, else of the checkout this package lives in."""
    here = Path("web/dist")
    if here.is_dir():
        return here.resolve()
    return Path(__file__).resolve().parents[5] / "web" / "dist"
