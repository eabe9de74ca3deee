"""The lifecycle jobs on a schedule: two replicas tick on a short interval; idle conversations
get archived and retention applied without anyone asking, runs never overlap nor come closer
than the interval, and each run is recorded (a row, and an event per tenant)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from datetime import timedelta

import pytest

from taskpilot.contracts import subjects
from taskpilot.conversation.gdpr import stored_count
from taskpilot.conversation.lifecycle import open_lifecycle
from taskpilot.conversation.lifecycle_schedule import LifecycleSchedule, lifecycle_schedule
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.testing import eventually
from tests.integration.lifecycle.conftest import World, add_tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

INTERVAL = timedelta(seconds=1.5)


async def test_two_replicas_run_the_jobs_once_per_interval(world: World) -> None:
    tenant = "ls" + uuid.uuid4().hex[:6]
    await add_tenant(world.tenants, tenant, archive_after_days=30, message_content_days=400)
    leads = world.seed(tenant, 20)
    await world.lifecycle.catch_up()
    world.query(
        "UPDATE lifecycle_catalog SET last_event_at = last_event_at - interval '40 days' "
        "WHERE tenant_id = %s RETURNING 1",
        tenant,
    )
    pool = await open_pool(world.database_url, max_size=4)
    other = await open_lifecycle(world.app, pool, world.tenants, world.bus, world.settings)
    replicas = [
        LifecycleSchedule(
            lifecycle, world.tenants, world.bus, interval_s=INTERVAL.total_seconds(), tick_s=0.05
        )
        for lifecycle in (world.lifecycle, other)
    ]
    ticking = [asyncio.create_task(r.run()) for r in replicas]
    try:

        async def archived() -> bool:
            return all(world.hot_events(tenant, lead) == 0 for lead in leads)

        await eventually(archived, timeout=30, what="the scheduled archive")

        async def three_runs() -> bool:
            rows = world.query("SELECT count(*) FROM lifecycle_runs WHERE finished_at IS NOT NULL")
            return rows[0][0] >= 3

        await eventually(three_runs, timeout=30, what="three scheduled runs")
    finally:
        for task in ticking:
            task.cancel()
        for task in ticking:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await pool.close()

    runs = world.query(
        "SELECT started_at, finished_at, replica, archived FROM lifecycle_runs "
        "WHERE finished_at IS NOT NULL ORDER BY started_at"
    )
    for before, after in itertools.pairwise(runs):
        assert after[0] >= before[1], "two runs overlapped"
        assert after[0] - before[0] >= INTERVAL, "a run came sooner than the interval"
    assert sum(r[3] for r in runs) == 20  # each conversation archived once, by one run
    assert {r[2] for r in runs} <= {r.replica for r in replicas}
    finished = subjects.CONVERSATION_EVENT.wildcard(tenant=tenant, event="lifecycle_run_finished")
    assert await stored_count(world.bus, subjects.CONVERSATION.name, finished) >= len(runs) >= 3
    retention = subjects.CONVERSATION_EVENT.wildcard(tenant=tenant, event="retention_applied")
    assert await stored_count(world.bus, subjects.CONVERSATION.name, retention) >= len(runs)


async def test_the_schedule_can_be_switched_off(world: World) -> None:
    off = world.settings.model_copy(update={"lifecycle_schedule": False})
    assert lifecycle_schedule(world.lifecycle, world.tenants, world.bus, off) is None
    on = lifecycle_schedule(world.lifecycle, world.tenants, world.bus, world.settings)
    assert on is not None
