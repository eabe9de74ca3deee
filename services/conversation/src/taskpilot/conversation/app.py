"""Composition root of the conversation service."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from taskpilot.conversation import handlers
from taskpilot.conversation.adapters import open_event_store
from taskpilot.conversation.api import timeline_router
from taskpilot.conversation.relay import Relay
from taskpilot.conversation.settings import ConversationSettings
from taskpilot.runtime.bootstrap import connect
from taskpilot.runtime.host import ServiceApp
from taskpilot.runtime.ops import add_ops_routes


async def create(settings: ConversationSettings) -> ServiceApp:
    res = await connect(settings, "conversation")
    app = await asyncio.to_thread(
        open_event_store, settings.database_url, settings.event_store_schema
    )
    relay = Relay(app, res.bus, res.pool)
    loop = asyncio.get_running_loop()

    def wake_relay() -> None:  # called from the saving thread
        loop.call_soon_threadsafe(relay.wake)

    app.on_saved = wake_relay
    handlers.register(res.bus, app, settings.partitions)
    http = FastAPI(title="TaskPilot conversation", version="0.1.0")
    http.include_router(timeline_router(app))
    add_ops_routes(http, "conversation", res.readiness())

    async def close_store() -> None:
        app.close()

    return ServiceApp(
        "conversation",
        res.bus,
        http,
        settings.http_host,
        settings.http_port,
        background=[relay.run],
        on_stop=[close_store, res.close],
    )
