"""The analytics side of a lifecycle test: the conversation service's relay publishing the
seeded history, and analytics' own projector consuming it live, as in production.

Totals are read through the analytics service's summary use case (what the dashboard shows),
after waiting until every conversation event stored in the stream has been projected.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from taskpilot.analytics import handlers
from taskpilot.analytics.rebuild import Rebuilder
from taskpilot.analytics.repository import (
    ConversationFilter,
    OperatorStore,
    ProjectionStore,
    ReadModels,
)
from taskpilot.analytics.service import Dashboard, Projector
from taskpilot.contracts import subjects
from taskpilot.conversation.adapters import Timers
from taskpilot.conversation.gdpr import stored_count
from taskpilot.conversation.relay import Relay
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.testing import eventually
from taskpilot.tenancy import TenantDirectory, tenant_transaction

SINCE = datetime.now(UTC) - timedelta(days=1)
UNTIL = datetime.now(UTC) + timedelta(days=1)


@dataclass
class Analytics:
    bus: Bus
    pool: AsyncConnectionPool
    database_url: str
    relay: Relay
    store: ProjectionStore
    operator: OperatorStore
    dashboard: Dashboard

    async def relay_all(self) -> int:
        """Publish every stored event not yet published (what the service's relay does)."""
        position = 0
        while (after := await self.relay.relay_once(position)) != position:
            position = after
        return position

    async def projected(self, tenant: str) -> bool:
        """Every conversation event of the tenant in the stream is in the read models."""
        subject = subjects.CONVERSATION_EVENT.wildcard(tenant=tenant)
        published = await stored_count(self.bus, subjects.CONVERSATION.name, subject)
        async with tenant_transaction(self.pool, tenant) as conn:
            cur = await conn.execute("SELECT count(*) FROM analytics_projected")
            row = await cur.fetchone()
        return bool(published) and row is not None and row[0] == published

    async def totals(self, tenant: str) -> dict[str, Any]:
        """The dashboard's summary and its conversation rows (the export), once the projector
        has caught up with the stream."""
        await eventually(
            lambda: self.projected(tenant), timeout=60, what=f"analytics caught up ({tenant})"
        )
        summary = await self.dashboard.summary(tenant, SINCE, UNTIL)
        return {**summary, "rows": await self.dashboard.export(tenant, ConversationFilter())}

    async def rebuild(self) -> int:
        """``taskpilot projections rebuild``: the read models again, from the streams alone."""
        rebuilder = Rebuilder(self.bus.js, self.database_url, self.store, self.operator)
        return (await rebuilder.rebuild()).total


@asynccontextmanager
async def running_analytics(
    nats_url: str,
    database_url: str,
    app: Any,
    publisher: Bus,
    tenants: TenantDirectory,
) -> AsyncIterator[Analytics]:
    from taskpilot.runtime.db import open_pool

    pool = await open_pool(database_url, max_size=6)
    operator = OperatorStore(pool)
    await operator.migrate()
    timers = Timers(pool)
    await timers.ensure_schema()
    relay = Relay(
        app,
        publisher,
        pool,
        timers,
        turn_deadline=timedelta(seconds=30),
        burst_window=timedelta(0),
        batch=500,
        idle_poll_s=0.01,
    )
    store = ProjectionStore(pool)
    bus = Bus(nats_url, name=f"analytics-{uuid.uuid4().hex[:6]}")
    await bus.connect()
    handlers.register(bus, Projector(store))
    await bus.start()
    dashboard = Dashboard(ReadModels(pool), operator, tenants)
    try:
        yield Analytics(bus, pool, database_url, relay, store, operator, dashboard)
    finally:
        await bus.close()
        await pool.close()
