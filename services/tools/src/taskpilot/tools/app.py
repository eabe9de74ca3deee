"""Composition root of tools."""

from __future__ import annotations

from fastapi import FastAPI

from taskpilot.runtime.bootstrap import connect
from taskpilot.runtime.host import ServiceApp
from taskpilot.runtime.ops import add_ops_routes
from taskpilot.tools import handlers
from taskpilot.tools.service import ToolsService
from taskpilot.tools.settings import ToolsSettings


async def create(settings: ToolsSettings) -> ServiceApp:
    res = await connect(settings, "tools")
    handlers.register(res.bus, ToolsService(res.bus))
    http = FastAPI(title="TaskPilot tools", version="0.1.0")
    add_ops_routes(http, "tools", res.readiness())
    return ServiceApp(
        "tools", res.bus, http, settings.http_host, settings.http_port, on_stop=[res.close]
    )
