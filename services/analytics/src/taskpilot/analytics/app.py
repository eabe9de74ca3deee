"""Composition root of analytics: projections, the dashboard API, the web dashboard."""

from __future__ import annotations

import asyncio
import logging

import httpx

from taskpilot.analytics import handlers
from taskpilot.analytics.api import UseCases, build_http, mount_web
from taskpilot.analytics.auth import LocalIssuer, TokenVerifier
from taskpilot.analytics.keys import ApiKeys
from taskpilot.analytics.live import ChangeFeed
from taskpilot.analytics.onboarding import Onboarding
from taskpilot.analytics.rebuild import Rebuilder
from taskpilot.analytics.repository import OperatorStore, ProjectionStore, ReadModels
from taskpilot.analytics.sandbox import Sandbox
from taskpilot.analytics.service import Dashboard, DeadLetters, Projector
from taskpilot.analytics.settings import AnalyticsSettings
from taskpilot.analytics.upstreams import Upstreams
from taskpilot.runtime.bootstrap import connect
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.host import ServiceApp
from taskpilot.runtime.ops import add_ops_routes
from taskpilot.tenancy.api_keys import ApiKeyStore

log = logging.getLogger(__name__)


async def create(settings: AnalyticsSettings) -> ServiceApp:
    res = await connect(settings, "analytics")
    operator = OperatorStore(res.pool)
    replay_history = await operator.migrate()
    read_pool = (
        await open_pool(settings.read_database_url) if settings.read_database_url else res.pool
    )
    projections = ProjectionStore(res.pool)
    handlers.register(res.bus, Projector(projections))
    rebuilder = Rebuilder(res.bus.js, settings.database_url, projections, operator)

    local = LocalIssuer.in_data_dir(settings.data_dir) if settings.local_issuer else None
    api_keys = ApiKeyStore(res.pool)
    await api_keys.ensure_schema()
    verifier = TokenVerifier(
        local=local,
        oidc_issuer=settings.oidc_issuer,
        oidc_audience=settings.oidc_audience,
        oidc_jwks_url=settings.oidc_jwks_url,
        oidc_algorithms=settings.oidc_algorithms,
        tenant_claim=settings.tenant_claim,
        roles_claim=settings.roles_claim,
        api_keys=api_keys,
    )
    client = httpx.AsyncClient()
    upstreams = Upstreams(
        client,
        {
            "conversation": settings.conversation_url,
            "knowledge": settings.knowledge_url,
            "tools": settings.tools_url,
            "ingest": settings.ingest_url,
            "sandbox": settings.sandbox_url,
        },
    )
    reads = ReadModels(read_pool)
    feed = ChangeFeed(settings.database_url)
    use = UseCases(
        dashboard=Dashboard(reads, operator, res.tenants),
        dead_letters=DeadLetters(reads, operator, res.bus),
        onboarding=Onboarding(res.tenants, operator, settings.public_webhook_base or ""),
        sandbox=Sandbox(res.tenants, upstreams),
        upstreams=upstreams,
        feed=feed,
        api_keys=ApiKeys(res.tenants, api_keys),
    )
    browser_login = (
        {
            "issuer": settings.oidc_issuer,
            "client_id": settings.oidc_client_id,
            "audience": settings.oidc_audience or "",
            "scope": settings.oidc_scope,
        }
        if settings.oidc_issuer and settings.oidc_client_id
        else None
    )
    http = build_http(use, verifier, local, browser_login)

    async def live() -> bool:
        return feed.listening.is_set()

    # New read models are not ready until the history has been replayed into them.
    replayed = asyncio.Event()
    if not replay_history:
        replayed.set()

    async def read_models() -> bool:
        return replayed.is_set()

    checks = {**res.readiness(), "live": live, "read_models": read_models}
    add_ops_routes(http, "analytics", checks)
    mount_web(http, settings.web_dir)

    if local is not None:
        log.info(
            "dashboard at http://%s:%d — sign in with: taskpilot token --tenant <id> --role owner "
            "--url (local issuer, key in %s)",
            settings.http_host,
            settings.http_port,
            settings.data_dir / "auth",
        )

    async def replay_once() -> None:
        report = await rebuilder.rebuild()
        replayed.set()
        log.info("read models (re)created and replayed: %d events", report.total)

    async def close_read_pool() -> None:
        if read_pool is not res.pool:
            await read_pool.close()

    return ServiceApp(
        "analytics",
        res.bus,
        http,
        settings.http_host,
        settings.http_port,
        background=[feed.run, *([replay_once] if replay_history else [])],
        on_stop=[client.aclose, close_read_pool, res.close],
    )
