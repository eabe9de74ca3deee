"""Composition root of the conversation service."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from fastapi import FastAPI

from taskpilot.conversation import handlers
from taskpilot.conversation.adapters import EVENT_STORE_CONNECTIONS, Timers, open_event_store
from taskpilot.conversation.api import conversations_router
from taskpilot.conversation.committer import GroupCommitter
from taskpilot.conversation.domain import Conversation
from taskpilot.conversation.gdpr import Gdpr
from taskpilot.conversation.lifecycle import open_lifecycle
from taskpilot.conversation.lifecycle_schedule import lifecycle_schedule
from taskpilot.conversation.memory import LeadMemory
from taskpilot.conversation.relay import Backpressure, Relay
from taskpilot.conversation.settings import ConversationSettings
from taskpilot.conversation.timers import TimerLoop
from taskpilot.conversation.whatif import WhatIf
from taskpilot.runtime.auth import Guard, add_auth_errors, verifier_for
from taskpilot.runtime.bootstrap import connect
from taskpilot.runtime.host import ServiceApp
from taskpilot.runtime.http_errors import add_input_errors
from taskpilot.runtime.ops import add_ops_routes
from taskpilot.runtime.telemetry import inject_headers


def _current_trace() -> dict[str, str]:
    return dict(inject_headers({}))


async def create(settings: ConversationSettings) -> ServiceApp:
    res = await connect(settings, "conversation")
    # Loads and saves run in threads (eventsourcing is synchronous): size the pool to the
    # event store's connections, not to the default of cores + 4.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=EVENT_STORE_CONNECTIONS, thread_name_prefix="store")
    )
    app = await asyncio.to_thread(
        open_event_store,
        settings.database_url,
        settings.event_store_schema,
        settings.burst_window_s,
    )
    Conversation.trace_context = staticmethod(_current_trace)  # type: ignore[method-assign]
    timers = Timers(res.pool)
    await timers.ensure_schema()
    relay = Relay(
        app,
        res.bus,
        res.pool,
        timers,
        turn_deadline=timedelta(seconds=settings.turn_deadline_s),
        burst_window=timedelta(seconds=settings.burst_window_s),
    )
    timer_loop = TimerLoop(app, timers, res.tenants, relay.active)
    gdpr = Gdpr(app, res.bus, res.pool, timers, settings.database_url)
    await gdpr.ensure_schema()
    loop = asyncio.get_running_loop()

    def wake_relay() -> None:  # called from the saving thread
        loop.call_soon_threadsafe(relay.wake)

    app.on_saved = wake_relay
    lifecycle = await open_lifecycle(app, res.pool, res.tenants, res.bus, settings)
    gdpr.archives = lifecycle
    schedule = lifecycle_schedule(lifecycle, res.tenants, res.bus, settings)
    committer = GroupCommitter(app)
    memory = LeadMemory(res.bus, gdpr)
    backpressure = Backpressure(
        res.pool,
        app.recorder.events_table_name,  # type: ignore[attr-defined]
        max_lag=settings.relay_max_lag,
    )
    handlers.register(
        res.bus,
        app,
        committer,
        res.tenants,
        settings.partitions,
        memory,
        lifecycle.ensure_hot,
        backpressure.wait,
    )
    guard = Guard(await verifier_for(settings, res.pool))
    http = FastAPI(title="TaskPilot conversation", version="0.1.0")
    add_auth_errors(http)
    add_input_errors(http)
    what_if = WhatIf(app.history_of, res.bus)
    http.include_router(conversations_router(app, gdpr, guard, what_if))
    add_ops_routes(http, "conversation", res.readiness())

    async def close_store() -> None:
        app.close()

    return ServiceApp(
        "conversation",
        res.bus,
        http,
        settings.http_host,
        settings.http_port,
        background=[
            committer.flush_forever,
            relay.run,
            backpressure.run,
            timer_loop.run,
            *([schedule.run] if schedule else []),
        ],
        on_stop=[close_store, res.close],
    )
