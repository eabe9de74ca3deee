"""Lifecycle jobs against a real PostgreSQL event store, a real NATS and a local archive.

Conversations are written through the Conversations application (the real aggregate and
store); the relay is marked caught up, as it would be long before anything is idle. A test
that needs the read models takes the ``analytics`` fixture: the real relay publishes the
history and analytics' projector consumes it (on the suite's own NATS server, so durable
consumer names are not shared with other suites).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from nats.aio.msg import Msg
from pydantic import SecretStr

from taskpilot.contracts.knowledge import KNOWLEDGE_MEMORY_ERASE, EraseLeadMemory, MemoryResult
from taskpilot.conversation.adapters import TIMERS_SCHEMA, open_event_store
from taskpilot.conversation.domain import Conversation, conversation_id
from taskpilot.conversation.lifecycle import Lifecycle, open_lifecycle
from taskpilot.conversation.service import Conversations
from taskpilot.conversation.settings import ConversationSettings
from taskpilot.runtime.bus import Bus, ensure_streams
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.servers import NatsServer
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.tenancy import BusinessProfile, SecretBox, Tenant, TenantDirectory, TenantSecrets
from tests.integration.lifecycle.analytics import Analytics, running_analytics


@dataclass
class World:
    database_url: str
    app: Conversations
    lifecycle: Lifecycle
    tenants: TenantDirectory
    bus: Bus
    archive_dir: Path
    settings: ConversationSettings
    forgotten: list[EraseLeadMemory] = field(default_factory=list)
    """What knowledge was asked to forget (a stand-in answers on the bus)."""

    def seed(self, tenant: str, n: int, prefix: str = "34") -> list[str]:
        """n finished conversations: a message, the reply, its delivery."""
        leads = [f"{prefix}{uuid.uuid4().int % 10**10:010d}" for _ in range(n)]
        batch: list[Conversation] = []
        for lead in leads:
            c = Conversation(tenant, lead, "777")
            wamid = f"wamid.{lead}"
            c.receive(wamid, "text", f"Hi, I'm {lead}, price?", "Ann", "cause")
            c.compose(wamid, {"text": "20 €", "tier": "L1", "source": "faq"}, "inference")
            c.sent(wamid, f"out.{lead}", "sender", wamid)
            batch.append(c)
            if len(batch) == 100:
                self.app.save(*batch)
                batch = []
        if batch:
            self.app.save(*batch)
        self.mark_relayed()
        return leads

    def mark_relayed(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(TIMERS_SCHEMA)
            conn.execute(
                """INSERT INTO relay_positions
                   SELECT 'conversation', coalesce(max(notification_id), 0)
                   FROM conversations_events
                   ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position"""
            )

    def hot_events(self, tenant: str, lead: str) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM conversations_events WHERE originator_id = %s",
                (conversation_id(tenant, lead),),
            ).fetchone()
        return int(row[0]) if row else 0

    def archived_object(self, tenant: str, lead: str) -> bool:
        conv = conversation_id(tenant, lead)
        return (self.archive_dir / tenant / "conversations" / f"{conv}.json.gz").exists()

    def query(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return list(conn.execute(statement, params).fetchall())  # type: ignore[arg-type]


async def add_tenant(directory: TenantDirectory, tenant: str, **profile: Any) -> None:
    await directory.upsert(
        Tenant(
            id=tenant,
            name=tenant,
            profile=BusinessProfile(name=tenant, **profile),
            secrets=TenantSecrets(
                app_secret=SecretStr("a"), access_token=SecretStr("b"), verify_token=SecretStr("c")
            ),
        )
    )


@pytest.fixture(scope="module")
def lifecycle_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats-lifecycle")).start()
    yield server
    server.stop()


@pytest.fixture
async def world(
    fresh_database_url: str, lifecycle_nats: NatsServer, tmp_path: Path
) -> AsyncIterator[World]:
    nats_server = lifecycle_nats
    settings = ConversationSettings(
        nats_url=nats_server.url,
        database_url=fresh_database_url,
        archive_url=str(tmp_path / "archive"),
        log_json=False,
    )
    app = await asyncio.to_thread(open_event_store, fresh_database_url)
    pool = await open_pool(fresh_database_url, max_size=8)
    tenants = TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS), ttl_s=0)
    await tenants.ensure_schema()
    bus = Bus(nats_server.url, name="lifecycle-test")
    await bus.connect()
    await ensure_streams(bus.js)
    lifecycle = await open_lifecycle(app, pool, tenants, bus, settings, batch=100)
    world = World(fresh_database_url, app, lifecycle, tenants, bus, tmp_path / "archive", settings)

    async def forget(msg: Msg) -> None:  # knowledge's side of retention
        world.forgotten.append(EraseLeadMemory.model_validate_json(msg.data))
        await msg.respond(MemoryResult(erased=1).model_dump_json().encode())

    knowledge = await bus.nc.subscribe(KNOWLEDGE_MEMORY_ERASE.wildcard(), cb=forget)
    try:
        yield world
    finally:
        await knowledge.unsubscribe()
        app.close()
        await bus.close()
        await pool.close()


@pytest.fixture
async def analytics(world: World) -> AsyncIterator[Analytics]:
    async with running_analytics(
        world.settings.nats_url, world.database_url, world.app, world.bus, world.tenants
    ) as side:
        yield side
