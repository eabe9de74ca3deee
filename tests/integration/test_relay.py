"""Publish after commit: the relay of the event store's notification log, crash included."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from psycopg_pool import AsyncConnectionPool

from taskpilot.contracts import subjects
from taskpilot.contracts.whatsapp import TextContent, WhatsAppMessageReceived
from taskpilot.conversation.adapters import Timers, open_event_store
from taskpilot.conversation.relay import Relay
from taskpilot.conversation.service import Conversations
from taskpilot.runtime.bus import Bus, ensure_streams
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.servers import NatsServer

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def parts(
    nats_server: NatsServer, fresh_database_url: str
) -> AsyncIterator[tuple[Conversations, Bus, AsyncConnectionPool]]:
    app = await asyncio.to_thread(open_event_store, fresh_database_url)
    bus = Bus(nats_server.url, name="relay-test")
    await bus.connect()
    await ensure_streams(bus.js)
    pool = await open_pool(fresh_database_url, max_size=2)
    await Timers(pool).ensure_schema()
    yield app, bus, pool
    await pool.close()
    await bus.close()
    app.close()


def relay_for(app: Conversations, bus: Bus, pool: AsyncConnectionPool, tenant: str) -> Relay:
    return Relay(
        app,
        bus,
        pool,
        Timers(pool),
        turn_deadline=timedelta(seconds=30),
        burst_window=timedelta(0),
        name=f"test-{tenant}",
    )


def inbound(tenant: str, lead: str, text: str) -> WhatsAppMessageReceived:
    wamid = "wamid." + uuid.uuid4().hex
    return WhatsAppMessageReceived(
        tenant_id=tenant,
        correlation_id=wamid,
        wamid=wamid,
        phone_number_id="1001",
        lead=lead,
        wa_timestamp=datetime.now(UTC),
        content=TextContent(body=text),
    )


async def messages_on(bus: Bus, subject: str) -> list[bytes]:
    sub = await bus.js.subscribe(subject, ordered_consumer=True)
    found = []
    try:
        while True:
            try:
                found.append((await sub.next_msg(timeout=0.3)).data)
            except TimeoutError:
                return found
    finally:
        await sub.unsubscribe()


async def test_crash_between_publish_and_position_save_duplicates_nothing(parts) -> None:  # type: ignore[no-untyped-def]
    app, bus, pool = parts
    tenant = "relay" + uuid.uuid4().hex[:6]
    for n in range(5):
        await asyncio.to_thread(app.receive, inbound(tenant, f"lead{n}", f"hello {n}"))

    relay = relay_for(app, bus, pool, tenant)
    position = await relay.relay_once(0)
    assert position > 0
    # The crash: everything was published, but the position was never saved (we run again
    # from 0, as a restarted relay that lost its position would).
    again = relay_for(app, bus, pool, tenant)
    assert await again.relay_once(0) == position

    events = await messages_on(bus, subjects.CONVERSATION_EVENT.wildcard(tenant=tenant))
    commands = await messages_on(bus, subjects.GENERATE_REPLY.subject(tenant=tenant))
    assert len(events) == 10  # 5 x (LeadMessageReceived, ReplyRequested)
    assert len(commands) == 5
    assert len(set(events)) == 10


async def test_relay_resumes_from_its_saved_position(parts) -> None:  # type: ignore[no-untyped-def]
    app, bus, pool = parts
    tenant = "relay" + uuid.uuid4().hex[:6]
    relay = relay_for(app, bus, pool, tenant)
    await asyncio.to_thread(app.receive, inbound(tenant, "a", "one"))
    first = await relay.relay_once(0)
    await asyncio.to_thread(app.receive, inbound(tenant, "a", "two"))
    restarted = relay_for(app, bus, pool, tenant)
    saved = await Timers(pool).position(f"test-{tenant}")
    assert saved == first
    assert await restarted.relay_once(saved) > first
    events = await messages_on(bus, subjects.CONVERSATION_EVENT.wildcard(tenant=tenant))
    # received, requested; received, superseded (turn one was still open), requested
    assert len(events) == 5
