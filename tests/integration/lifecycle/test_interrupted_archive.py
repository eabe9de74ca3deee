"""An archive job killed midway (SIGKILL of the real command, or a crash injected between
steps) is resumed by the next run: every conversation ends in exactly one place."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from taskpilot.contracts import subjects
from taskpilot.conversation.gdpr import stored_count
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import eventually
from tests.integration.lifecycle.conftest import World, add_tenant

pytestmark = pytest.mark.asyncio(loop_scope="session")

LATER = datetime.now(UTC) + timedelta(days=100)


class Crash(Exception):
    pass


def assert_each_in_exactly_one_place(world: World, tenant: str, leads: list[str]) -> None:
    """Hot events xor an archive object, and the catalog says which."""
    located = dict(world.query("SELECT lead, location FROM lifecycle_catalog"))
    for lead in leads:
        hot, archived = world.hot_events(tenant, lead) > 0, world.archived_object(tenant, lead)
        assert (hot, archived) in ((True, False), (False, True)), f"{lead}: {hot=} {archived=}"
        assert located[lead] == ("hot" if hot else "archived")


def assert_each_in_its_catalogued_place(world: World, tenant: str, leads: list[str]) -> None:
    """Mid-job: an object may already be written (a copy, not yet the conversation's place)
    while its events are still hot; what the catalog says is always true and whole."""
    located = dict(world.query("SELECT lead, location FROM lifecycle_catalog"))
    for lead in leads:
        hot, archived = world.hot_events(tenant, lead) > 0, world.archived_object(tenant, lead)
        assert (hot, archived) != (False, False), f"{lead} is nowhere"
        assert (located[lead] == "hot") == hot and (located[lead] != "archived" or archived)


async def test_sigkill_midway_then_rerun(world: World) -> None:
    tenant = "lk" + uuid.uuid4().hex[:6]
    await add_tenant(world.tenants, tenant)
    leads = world.seed(tenant, 300)
    env = {
        **os.environ,
        "DATABASE_URL": world.database_url,
        "NATS_URL": world.settings.nats_url,
        "TASKPILOT_SECRET_KEYS": DEV_SECRET_KEYS,
        "TASKPILOT_CONVERSATION_ARCHIVE_URL": str(world.archive_dir),
    }
    command = [sys.executable, "-m", "taskpilot.cli", "lifecycle", "archive"]
    command += ["--tenant", tenant, "--batch", "5", "--days-ahead", "100"]
    job = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    async def some_archived() -> bool:
        rows = world.query("SELECT count(*) FROM archive_items WHERE state = 'archived'")
        return rows[0][0] >= 20

    await eventually(some_archived, timeout=60, what="the job archived its first batches")
    job.send_signal(signal.SIGKILL)
    await job.wait()
    assert world.query("SELECT state FROM archive_jobs") == [("running",)], "killed too late"
    assert_each_in_its_catalogued_place(world, tenant, leads)

    report = await world.lifecycle.archive(tenant, LATER)

    assert report.resumed and report.archived == 300
    assert world.query("SELECT state FROM archive_jobs") == [("finished",)]
    assert all(world.hot_events(tenant, lead) == 0 for lead in leads)
    assert_each_in_exactly_one_place(world, tenant, leads)
    subject = subjects.CONVERSATION_EVENT.wildcard(tenant=tenant, event="archived")
    assert await stored_count(world.bus, subjects.CONVERSATION.name, subject) == 300


@pytest.mark.parametrize("step", ["selected", "written"])
async def test_a_crash_between_steps_is_resumed(world: World, step: str) -> None:
    tenant = "lj" + uuid.uuid4().hex[:6]
    await add_tenant(world.tenants, tenant)
    leads = world.seed(tenant, 40)

    async def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    world.lifecycle._step = crash  # the seam for injected crashes
    with pytest.raises(Crash):
        await world.lifecycle.archive(tenant, LATER)
    assert_each_in_its_catalogued_place(world, tenant, leads)

    world.lifecycle._step = lambda at: _nothing()
    report = await world.lifecycle.archive(tenant, LATER)

    assert report.resumed and report.archived == 40
    assert_each_in_exactly_one_place(world, tenant, leads)


async def _nothing() -> None:
    return None
