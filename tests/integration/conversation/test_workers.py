"""Several conversation processes at once, and one killed mid-load: order and exactly-once."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import nats
import psycopg
import pytest
from pydantic import SecretStr

from taskpilot.contracts import subjects
from taskpilot.contracts.inference import GenerateReply, ReplyGenerated
from taskpilot.contracts.whatsapp import TextContent, WhatsAppMessageReceived
from taskpilot.runtime.bus import Bus, ensure_streams
from taskpilot.runtime.consumer import ConsumerPolicy, ConsumerSpec, subscribe
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.servers import (
    NatsServer,
    create_database,
    drop_database,
    free_port,
    scratch_database_name,
)
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import ServiceProcess, eventually
from taskpilot.tenancy import BusinessProfile, SecretBox, Tenant, TenantDirectory, TenantSecrets

pytestmark = pytest.mark.asyncio(loop_scope="session")
TENANT = "workers"


class World:
    def __init__(self, nats_url: str, database_url: str, logs: Path):
        self.nats_url, self.database_url, self.logs = nats_url, database_url, logs
        self.processes: list[ServiceProcess] = []

    def worker(self, n: int) -> ServiceProcess:
        port = free_port()
        env = {
            "NATS_URL": self.nats_url,
            "DATABASE_URL": self.database_url,
            "TASKPILOT_SECRET_KEYS": DEV_SECRET_KEYS,
            "TASKPILOT_CONVERSATION_HTTP_PORT": str(port),
            # These tests count the stream against the event store; a lifecycle run's
            # tenant-wide event is published without being a stored conversation event.
            "TASKPILOT_CONVERSATION_LIFECYCLE_SCHEDULE": "false",
        }
        process = ServiceProcess("taskpilot.conversation", env, port, self.logs / f"conv{n}.log")
        self.processes.append(process.start())
        return process


@pytest.fixture
async def world(postgres_admin_url: str, tmp_path: Path) -> AsyncIterator[World]:
    server = NatsServer(tmp_path / "nats").start()
    dbname = scratch_database_name()
    world = World(server.url, create_database(postgres_admin_url, dbname), tmp_path)
    pool = await open_pool(world.database_url, max_size=1)
    directory = TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS))
    await directory.ensure_schema()
    await directory.upsert(
        Tenant(
            id=TENANT,
            name="Workers",
            profile=BusinessProfile(name="Workers"),
            secrets=TenantSecrets(
                app_secret=SecretStr("a"), access_token=SecretStr("b"), verify_token=SecretStr("c")
            ),
            phone_number_ids=["1"],
        )
    )
    await pool.close()
    try:
        yield world
    finally:
        for process in world.processes:
            process.stop()
        server.stop()
        drop_database(postgres_admin_url, dbname)


async def fake_inference(bus: Bus) -> list[str]:
    """Answers every GenerateReply at once, as a level-1 template would."""
    answered: list[str] = []

    async def answer(request: GenerateReply) -> None:
        answered.append(request.turn_id)
        await bus.publish(
            request.caused(
                ReplyGenerated,
                conversation_id=request.conversation_id,
                turn_id=request.turn_id,
                text=f"re: {request.text[-12:]}",
                tier="L1",
                source="template",
                round=request.round,
            ),
            msg_id=f"reply:{request.event_id}",
        )

    spec = ConsumerSpec(
        "fake-inference",
        subjects.INFERENCE,
        subjects.GENERATE_REPLY.wildcard(),
        ConsumerPolicy(workers=16),
    )
    subscribe(bus, spec, GenerateReply, answer)
    await bus.start()
    return answered


def message(lead: str, n: int) -> WhatsAppMessageReceived:
    wamid = f"wamid.{lead}.{n:02d}"
    return WhatsAppMessageReceived(
        tenant_id=TENANT,
        correlation_id=wamid,
        wamid=wamid,
        phone_number_id="1",
        lead=lead,
        wa_timestamp=datetime.now(UTC),
        content=TextContent(body=f"{lead} m{n:02d}"),
    )


async def publish_interleaved(bus: Bus, conversations: int, per: int) -> None:
    for n in range(per):
        await asyncio.gather(
            *(
                bus.publish(message(f"lead{c:03d}", n), msg_id=f"wamid.lead{c:03d}.{n:02d}")
                for c in range(conversations)
            )
        )


def stored_histories(database_url: str) -> dict[str, list[tuple[str, dict]]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT originator_id::text, topic, state FROM conversations_events
               ORDER BY originator_id, originator_version"""
        ).fetchall()
    histories: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for conv, topic, state in rows:
        histories[conv].append((topic.rsplit(".", 1)[-1], json.loads(bytes(state))))
    return histories


async def test_four_workers_keep_each_conversation_in_order_and_answer_once(world: World) -> None:
    workers = [world.worker(n) for n in range(4)]
    for worker in workers:
        await worker.wait_ready()
    bus = Bus(world.nats_url, name="load")
    await bus.connect()
    await ensure_streams(bus.js)
    await fake_inference(bus)
    try:
        await publish_interleaved(bus, conversations=200, per=10)

        async def settled() -> dict[str, list[tuple[str, dict]]] | None:
            histories = await asyncio.to_thread(stored_histories, world.database_url)
            done = [
                h
                for h in histories.values()
                if sum(t.endswith("MessageReceived") for t, _ in h) == 10
                and h[-1][0].endswith(("ReplyComposed", "ReplySent"))
            ]
            return histories if len(done) == 200 else None

        histories = await eventually(settled, timeout=120, interval=0.5, what="2,000 messages")
    finally:
        await bus.close()
    for history in histories.values():
        received = [s["wamid"] for t, s in history if t.endswith("MessageReceived")]
        assert received == sorted(received) and len(set(received)) == 10  # in order, once
        composed = [s["turn_id"] for t, s in history if t.endswith("ReplyComposed")]
        assert len(composed) == len(set(composed))  # each turn answered once
        last_request = [s for t, s in history if t.endswith("ReplyRequested")][-1]
        assert last_request["text"].endswith("m09")  # the last message is always answered


async def test_killed_relay_neither_loses_nor_duplicates_events(world: World) -> None:
    worker = world.worker(0)
    await worker.wait_ready()
    bus = Bus(world.nats_url, name="load")
    await bus.connect()
    await ensure_streams(bus.js)
    nc = await nats.connect(world.nats_url)
    try:
        load = asyncio.create_task(publish_interleaved(bus, conversations=50, per=6))

        async def some_relayed() -> bool:
            info = await nc.jetstream().stream_info(subjects.CONVERSATION.name)
            return info.state.messages > 60

        await eventually(some_relayed, timeout=30, what="relay under way")
        worker.stop(signal.SIGKILL)  # mid-load: commits done, publishes pending
        await load
        restarted = world.worker(1)
        await restarted.wait_ready()

        async def all_relayed() -> int | None:
            histories = await asyncio.to_thread(stored_histories, world.database_url)
            stored = sum(len(h) - 1 for h in histories.values())  # Started stays private
            received = sum(t.endswith("MessageReceived") for h in histories.values() for t, _ in h)
            info = await nc.jetstream().stream_info(subjects.CONVERSATION.name)
            return stored if received == 300 and info.state.messages >= stored else None

        stored = await eventually(all_relayed, timeout=60, interval=0.5, what="every event relayed")
        info = await nc.jetstream().stream_info(subjects.CONVERSATION.name)
        assert info.state.messages == stored  # nothing lost, nothing doubled
    finally:
        await nc.close()
        await bus.close()
