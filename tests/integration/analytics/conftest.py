"""Analytics against real NATS (its own server: durable consumer names must not be shared with
other suites) and a fresh PostgreSQL database per test."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from psycopg_pool import AsyncConnectionPool

from taskpilot.analytics.repository import OperatorStore, ProjectionStore
from taskpilot.runtime.bus import Bus, ensure_streams
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.servers import NatsServer

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def analytics_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats-analytics")).start()
    yield server
    server.stop()


@pytest.fixture
async def bus(analytics_nats: NatsServer) -> AsyncIterator[Bus]:
    bus = Bus(analytics_nats.url, name=f"test-{uuid.uuid4().hex[:6]}")
    await bus.connect()
    await ensure_streams(bus.js)
    yield bus
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(bus.close(), 15)


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(fresh_database_url, max_size=4)
    await OperatorStore(pool).migrate()
    yield pool
    await pool.close()


@pytest.fixture
def store(pool: AsyncConnectionPool) -> ProjectionStore:
    return ProjectionStore(pool)


@pytest.fixture
def operator(pool: AsyncConnectionPool) -> OperatorStore:
    return OperatorStore(pool)


@pytest.fixture
def tenant() -> str:
    return "t" + uuid.uuid4().hex[:8]
