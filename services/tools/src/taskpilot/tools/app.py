"""Composition root of tools: every client is built here and passed down."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from taskpilot.runtime.auth import Guard, add_auth_errors, verifier_for
from taskpilot.runtime.bootstrap import connect
from taskpilot.runtime.db import migrate
from taskpilot.runtime.host import ServiceApp
from taskpilot.runtime.http_errors import add_input_errors
from taskpilot.runtime.ops import add_ops_routes
from taskpilot.tenancy import SecretBox
from taskpilot.tools import handlers
from taskpilot.tools.adapters import (
    ConversationHistory,
    DeadLetterArchive,
    Providers,
)
from taskpilot.tools.api import (
    add_exception_handlers,
    automation_router,
    configuration_router,
    stripe_router,
)
from taskpilot.tools.configuration import ToolsConfiguration
from taskpilot.tools.jobs import Jobs
from taskpilot.tools.repository import SCHEMA, ToolsRepository
from taskpilot.tools.service import ToolsService
from taskpilot.tools.settings import ToolsSettings
from taskpilot.tools.webhooks import OutgoingWebhooks, PaymentWebhooks, SubscriptionCache


async def create(settings: ToolsSettings) -> ServiceApp:
    res = await connect(settings, "tools")
    await migrate(res.pool, "taskpilot.tools", SCHEMA)
    repo = ToolsRepository(res.pool, SecretBox.from_setting(settings.secret_keys))
    http_client = httpx.AsyncClient(timeout=settings.provider_timeout_s)
    providers = Providers(
        http_client,
        google_api_base=settings.google_api_base,
        google_token_url=settings.google_token_url,
        stripe_api_base=settings.stripe_api_base,
        caldav_timeout_s=settings.provider_timeout_s,
        allow_private_targets=settings.allow_private_targets,
    )
    tools = ToolsService(
        repo,
        providers,
        res.bus,
        attempts=settings.execute_attempts,
        retry_delay_s=settings.execute_retry_s,
    )
    subscriptions = SubscriptionCache(repo.endpoints, settings.webhook_endpoints_ttl_s)
    outgoing = OutgoingWebhooks(
        repo, res.bus, providers.webhooks, DeadLetterArchive(res.bus.js), subscriptions
    )
    jobs = Jobs(
        repo,
        ConversationHistory(res.bus.js),
        res.bus,
        attempts=settings.job_attempts,
        step_pause_s=settings.job_step_pause_s,
        plan_timeout_s=settings.plan_timeout_s,
    )
    handlers.register(res.bus, settings, tools, outgoing, jobs)

    guard = Guard(await verifier_for(settings, res.pool))
    http = FastAPI(title="TaskPilot tools", version="0.1.0")
    add_exception_handlers(http)
    add_auth_errors(http)
    add_input_errors(http)
    http.include_router(configuration_router(ToolsConfiguration(repo, subscriptions), guard))
    http.include_router(automation_router(outgoing, jobs, guard))
    http.include_router(
        stripe_router(PaymentWebhooks(repo, res.bus, tolerance_s=settings.stripe_tolerance_s))
    )
    add_ops_routes(http, "tools", res.readiness())
    return ServiceApp(
        "tools",
        res.bus,
        http,
        settings.http_host,
        settings.http_port,
        on_stop=[http_client.aclose, res.close],
    )
