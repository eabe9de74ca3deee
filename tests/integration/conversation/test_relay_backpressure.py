"""Backpressure from the relay, on a real PostgreSQL: new lead messages wait while more stored
events than the limit are unpublished, and go on once the relay's position catches up."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from taskpilot.conversation.adapters import Timers
from taskpilot.conversation.relay import Backpressure
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.testing import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _true(value: bool) -> bool:
    return value


async def test_new_work_waits_while_the_relay_lags_and_goes_on_when_it_catches_up(
    fresh_database_url: str,
) -> None:
    pool = await open_pool(fresh_database_url)
    timers = Timers(pool)
    await timers.ensure_schema()
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE events (notification_id bigserial PRIMARY KEY)")
        await conn.execute("INSERT INTO events SELECT FROM generate_series(1, 10)")
    gate = Backpressure(pool, "events", max_lag=5, poll_s=0.01)
    sampler = asyncio.create_task(gate.run())
    try:
        assert await gate.lag() == 10
        await eventually(lambda: _true(gate.holding), what="held while 10 are unpublished")
        waiting = asyncio.create_task(gate.wait())
        await timers.apply([], "conversation", 4)  # the relay publishes four: 6 behind
        assert await gate.lag() == 6

        await timers.apply([], "conversation", 5)  # 5 behind: within the limit
        await asyncio.wait_for(waiting, timeout=5.0)
        assert not gate.holding
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        await pool.close()


async def test_a_limit_of_zero_never_holds(fresh_database_url: str) -> None:
    pool = await open_pool(fresh_database_url)
    try:
        gate = Backpressure(pool, "events", max_lag=0)
        await gate.run()  # returns at once: nothing to sample
        await asyncio.wait_for(gate.wait(), timeout=1.0)
    finally:
        await pool.close()
