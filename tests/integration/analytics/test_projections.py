"""Projections: idempotent, and rebuilt from the streams with the same result."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from typing import Any, cast

import pytest
from psycopg_pool import AsyncConnectionPool

from taskpilot.analytics import handlers
from taskpilot.analytics.domain import Projectable
from taskpilot.analytics.rebuild import Rebuilder
from taskpilot.analytics.repository import OperatorStore, ProjectionStore
from taskpilot.analytics.service import Projector
from taskpilot.contracts import Message, subjects
from taskpilot.contracts import conversation as ev
from taskpilot.contracts.dlq import UNKNOWN_TENANT
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.servers import (
    NatsServer,
    create_database,
    drop_database,
    scratch_database_name,
)
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import eventually
from taskpilot.tenancy import SecretBox, TenantDirectory
from tests.integration.analytics.conftest import START
from tests.integration.analytics.history import erased_lead_events, history

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def apply_all(store: ProjectionStore, events: list[Message]) -> list[bool]:
    return [await store.apply(_projectable(e)) for e in events]


def _projectable(event: Message) -> Projectable:
    return cast(Projectable, event)


async def publish_as_the_services_do(bus: Bus, events: list[Message]) -> None:
    """In order; the erasure purges the lead's earlier events from the stream first."""
    for event in events:
        if isinstance(event, ev.LeadErased):
            await bus.js.purge_stream(
                subjects.CONVERSATION.name,
                subject=subjects.CONVERSATION_EVENT.wildcard(
                    tenant=event.tenant_id, lead=event.lead
                )
                + "",
            )
        await bus.publish(event)


def by_key(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {r[key]: r for r in rows}


async def test_the_history_projects_every_figure(
    store: ProjectionStore, operator: OperatorStore, tenant: str
) -> None:
    await apply_all(store, history(tenant, START))
    snap = await operator.snapshot(tenant)
    conversations = by_key(snap["analytics_conversations"], "lead")

    ana = conversations["34600000001"]
    assert (ana["lead_name"], ana["status"], ana["messages_in"], ana["bot_replies"]) == (
        "Ana",
        "bot",
        1,
        1,
    )
    assert ana["first_response_ms"] == pytest.approx(2000)  # in at 0 s, sent at 2 s
    reply = next(m for m in snap["analytics_messages"] if m["turn_id"] == "t-a1")
    assert reply["status"] == "read"  # "delivered" arrived after "read" and did not demote it
    assert reply["citations"][0]["title"] == "What are your opening hours?"

    bea = conversations["34600000002"]
    assert bea["bot_replies"] == 3 and bea["cost_usd"] == pytest.approx(0.013)
    carla = conversations["34600000003"]
    assert (carla["status"], carla["handoffs"], carla["human_replies"]) == ("bot", 1, 1)
    human = next(m for m in snap["analytics_messages"] if m["turn_id"] == "h-c1")
    assert (human["tier"], human["agent"], human["reply_ms"]) == ("human", "maria@shop", 4000)
    dani = conversations["34600000004"]
    assert dani["window_closed"] is False  # the lead wrote again after the window closed
    failed = next(m for m in snap["analytics_messages"] if m["turn_id"] == "t-d1")
    assert (failed["status"], failed["failure"]) == ("failed", "re-engagement (131047)")
    assert "34600000005" not in conversations  # erased
    erased = erased_lead_events(history(tenant, START))[0]
    assert isinstance(erased, ev.ConversationEvent)
    assert all(m["conversation_id"] != erased.conversation_id for m in snap["analytics_messages"])

    bookings = by_key(snap["analytics_bookings"], "booking_id")
    assert bookings["bk-1"]["cancelled_at"] is None
    assert bookings["bk-2"]["cancelled_at"] is not None and bookings["bk-2"]["booked_at"]
    assert [(p["amount_minor"], p["currency"]) for p in snap["analytics_payments"]] == [
        (4000, "EUR")
    ]  # confirmed twice, counted once
    assert {d["reason"] for d in snap["analytics_dead_letters"]} == {
        "max_deliveries",
        "malformed_webhook",
    }


async def test_replaying_the_full_history_twice_changes_nothing(
    store: ProjectionStore, operator: OperatorStore, tenant: str
) -> None:
    events = history(tenant, START)
    assert all(await apply_all(store, events))
    first = await operator.snapshot(tenant)
    assert not any(await apply_all(store, events))  # every event recognised by its id
    assert await operator.snapshot(tenant) == first


async def test_a_redelivered_event_changes_nothing(
    store: ProjectionStore, operator: OperatorStore, tenant: str
) -> None:
    events = history(tenant, START)
    await apply_all(store, events)
    before = await operator.snapshot(tenant)
    # Redeliveries that would each do damage if applied twice: a counter, a status moved
    # backwards by an old handoff, a cost added twice, a booking revived.
    kinds = (ev.LeadMessageReceived, ev.ConversationHandedOff, ev.ReplyComposed, ev.ReplySent)
    for event in [e for e in events if isinstance(e, kinds)]:
        assert await store.apply(_projectable(event)) is False
    assert await operator.snapshot(tenant) == before


async def test_rebuild_from_the_streams_equals_the_live_projection(
    bus: Bus,
    fresh_database_url: str,
    store: ProjectionStore,
    operator: OperatorStore,
    tenant: str,
) -> None:
    events = history(tenant, START)
    await publish_as_the_services_do(bus, events)
    await apply_all(store, events)  # what the live consumers saw, purged events included
    live = await operator.snapshot(tenant)
    unknown_live = await operator.snapshot(UNKNOWN_TENANT)

    rebuilder = Rebuilder(bus.js, fresh_database_url, store, operator)
    first = await rebuilder.rebuild()
    assert first.applied[subjects.CONVERSATION.name] >= len(events) - 12
    assert await operator.snapshot(tenant) == live
    await rebuilder.rebuild()
    assert await operator.snapshot(tenant) == live
    assert await operator.snapshot(UNKNOWN_TENANT) == unknown_live


async def test_the_live_consumers_and_a_concurrent_rebuild_agree(
    bus: Bus,
    fresh_database_url: str,
    store: ProjectionStore,
    operator: OperatorStore,
    tenant: str,
    postgres_admin_url: str,
) -> None:
    events = history(tenant, START)
    handlers.register(bus, Projector(store))
    await bus.start()
    try:
        await _race(bus, events, fresh_database_url, store, operator, tenant, postgres_admin_url)
    finally:
        # Before the pool closes under the consumers; bounded, as a handler may be waiting for
        # a database connection when the server is saturated.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(bus.broker.stop(), 15)


async def _race(
    bus: Bus,
    events: list[Message],
    fresh_database_url: str,
    store: ProjectionStore,
    operator: OperatorStore,
    tenant: str,
    postgres_admin_url: str,
) -> None:
    half = len(events) // 2
    await publish_as_the_services_do(bus, events[:half])
    rebuild = asyncio.create_task(Rebuilder(bus.js, fresh_database_url, store, operator).rebuild())
    await publish_as_the_services_do(bus, events[half:])
    await rebuild

    async def all_projected() -> bool:
        snap = await operator.snapshot(tenant)
        return len(snap["analytics_projected"]) == len(
            {e.event_id for e in events} - {e.event_id for e in erased_lead_events(events)}
        )

    await eventually(all_projected, timeout=20, what="live consumers caught up")
    name = scratch_database_name()
    expected_pool = await open_pool(create_database(postgres_admin_url, name), max_size=2)
    try:
        expected = OperatorStore(expected_pool)
        await expected.migrate()
        await apply_all(ProjectionStore(expected_pool), events)
        assert await operator.snapshot(tenant) == await expected.snapshot(tenant)
    finally:
        await expected_pool.close()
        drop_database(postgres_admin_url, name)


async def test_the_rebuild_command_reports_identical_read_models(
    bus: Bus,
    analytics_nats: NatsServer,
    fresh_database_url: str,
    store: ProjectionStore,
    tenant: str,
) -> None:
    events = history(tenant, START)
    await publish_as_the_services_do(bus, events)
    await apply_all(store, events)
    pool = await open_pool(fresh_database_url, max_size=1)
    try:
        await TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS)).ensure_schema()
        async with pool.connection() as conn:
            await conn.execute(
                "INSERT INTO tenants (id, name, secrets) VALUES (%s, 'x', 'x')", (tenant,)
            )
    finally:
        await pool.close()
    env = {**os.environ, "NATS_URL": analytics_nats.url, "DATABASE_URL": fresh_database_url}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "taskpilot.cli", "projections", "rebuild", "--compare"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"tenant {tenant}: " in done.stdout and "same" in done.stdout
    assert "CONVERSATION: " in done.stdout


class WatchedStore(ProjectionStore):
    """Records every batch it is given and every batch that failed."""

    def __init__(self, pool: AsyncConnectionPool):
        super().__init__(pool)
        self.batches: list[int] = []
        self.failures: list[BaseException] = []

    async def apply_many(self, events: Sequence[Projectable]) -> list[bool]:
        self.batches.append(len(events))
        try:
            return await super().apply_many(events)
        except Exception as exc:
            self.failures.append(exc)
            raise


async def test_events_applied_in_batches_across_tenants_equal_one_by_one(
    pool: AsyncConnectionPool,
    store: ProjectionStore,
    operator: OperatorStore,
    postgres_admin_url: str,
) -> None:
    """The live projector applies what arrives together in one transaction, switching tenant
    between events: the read models must be those of applying each event alone."""
    tenants = ["t" + uuid.uuid4().hex[:8] for _ in range(3)]
    histories = [history(t, START) for t in tenants]
    interleaved: list[Message] = [
        e for group in itertools.zip_longest(*histories) for e in group if e is not None
    ]
    watched = WatchedStore(pool)
    projector = Projector(watched, max_batch=16)
    await asyncio.gather(*(projector.when_event(_projectable(e)) for e in interleaved))
    assert watched.failures == []  # no batch fell back to one event at a time
    assert max(watched.batches) > 1 and sum(watched.batches) == len(interleaved)
    redelivered = interleaved[:5]
    assert await store.apply_many([_projectable(e) for e in redelivered]) == [False] * 5

    name = scratch_database_name()
    expected_pool = await open_pool(create_database(postgres_admin_url, name), max_size=2)
    try:
        expected = OperatorStore(expected_pool)
        await expected.migrate()
        for events in histories:
            await apply_all(ProjectionStore(expected_pool), events)
        for tenant in tenants:
            assert await operator.snapshot(tenant) == await expected.snapshot(tenant)
    finally:
        await expected_pool.close()
        drop_database(postgres_admin_url, name)
