"""Composition root of analytics."""

from __future__ import annotations

from fastapi import FastAPI

from taskpilot.analytics import handlers
from taskpilot.analytics.api import dashboard_router
from taskpilot.analytics.repository import SCHEMA, AnalyticsRepository
from taskpilot.analytics.service import Projector
from taskpilot.analytics.settings import AnalyticsSettings
from taskpilot.runtime.bootstrap import connect
from taskpilot.runtime.db import migrate
from taskpilot.runtime.host import ServiceApp
from taskpilot.runtime.ops import add_ops_routes


async def create(settings: AnalyticsSettings) -> ServiceApp:
    res = await connect(settings, "analytics")
    await migrate(res.pool, "taskpilot.analytics", SCHEMA)
    repo = AnalyticsRepository(res.pool)
    handlers.register(res.bus, Projector(repo))
    http = FastAPI(title="TaskPilot dashboard API", version="0.1.0")
    http.include_router(dashboard_router(repo))
    add_ops_routes(http, "analytics", res.readiness())
    return ServiceApp(
        "analytics", res.bus, http, settings.http_host, settings.http_port, on_stop=[res.close]
    )
