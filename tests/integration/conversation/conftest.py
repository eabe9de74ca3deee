"""The conversation service in-process against real NATS and PostgreSQL; the tests play
inference, tools and the sender on the bus."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client
from pydantic import SecretStr

from taskpilot.contracts import Message, subjects
from taskpilot.contracts.knowledge import KNOWLEDGE_MEMORY_ERASE, EraseLeadMemory, MemoryResult
from taskpilot.contracts.whatsapp import TextContent, WhatsAppMessageReceived
from taskpilot.conversation.app import create
from taskpilot.conversation.domain import conversation_id
from taskpilot.conversation.settings import ConversationSettings
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.host import serve
from taskpilot.runtime.servers import (
    NatsServer,
    create_database,
    drop_database,
    free_port,
    scratch_database_name,
)
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import eventually
from taskpilot.runtime.testing.tokens import bearer, inline_jwks
from taskpilot.tenancy import BusinessProfile, SecretBox, Tenant, TenantDirectory, TenantSecrets
from taskpilot.tenancy.tokens import LocalIssuer

HOLDING = "One moment please, a colleague of Shop will answer you."


@dataclass
class Harness:
    base_url: str
    bus: Bus
    nc: Client
    tenant: str
    headers: dict[str, str] = field(default_factory=dict)
    database_url: str = ""  # the service's database (a test may add tenants to it)
    seen: dict[str, list[Any]] = field(default_factory=dict)
    memory_erasures: list[str] = field(default_factory=list)

    async def watch(self, subject: str) -> list[Any]:
        """Collect every message published on ``subject`` from now on (one subscription)."""
        if subject in self.seen:
            return self.seen[subject]
        box: list[Any] = self.seen.setdefault(subject, [])

        async def collect(msg: Any) -> None:
            box.append(msg)

        await self.nc.subscribe(subject, cb=collect)
        await self.nc.flush()
        return box

    async def lead_writes(
        self, lead: str, text: str, *, at: datetime | None = None, wamid: str | None = None
    ) -> str:
        wamid = wamid or f"wamid.{uuid.uuid4().hex}"
        await self.bus.publish(
            WhatsAppMessageReceived(
                tenant_id=self.tenant,
                correlation_id=wamid,
                wamid=wamid,
                phone_number_id="777",
                lead=lead,
                wa_timestamp=at or datetime.now(UTC),
                content=TextContent(body=text),
            ),
            msg_id=wamid,
        )
        return wamid

    def client(self) -> httpx.AsyncClient:
        """An HTTP client with the tenant owner's token."""
        return httpx.AsyncClient(headers=self.headers)

    async def publish(self, message: Message) -> None:
        await self.bus.publish(message)

    async def timeline(self, lead: str) -> list[dict[str, Any]]:
        conv = conversation_id(self.tenant, lead)
        async with self.client() as client:
            response = await client.get(
                f"{self.base_url}/v1/tenants/{self.tenant}/conversations/{conv}/events"
            )
        return list(response.json()) if response.status_code == 200 else []

    async def event_types(self, lead: str) -> list[str]:
        return [e["type"] for e in await self.timeline(lead)]

    async def until_events(self, lead: str, *types: str, timeout: float = 10) -> list[str]:
        async def present() -> list[str] | None:
            found = await self.event_types(lead)
            return found if all(found.count(t) >= types.count(t) for t in types) else None

        return await eventually(present, timeout=timeout, what=f"events {types} of {lead}")


@pytest.fixture(scope="module")
async def harness(
    postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory, token_issuer: LocalIssuer
) -> AsyncIterator[Harness]:
    # Its own NATS server: the durable consumers must not be shared with other suites' services.
    nats_server = NatsServer(tmp_path_factory.mktemp("nats-conversation")).start()
    dbname = scratch_database_name()
    database_url = create_database(postgres_admin_url, dbname)
    tenant = "conv" + uuid.uuid4().hex[:6]
    pool = await open_pool(database_url, max_size=1)
    directory = TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS))
    await directory.ensure_schema()
    await directory.upsert(
        Tenant(
            id=tenant,
            name="Shop",
            profile=BusinessProfile(name="Shop", handoff_message=HOLDING.replace("Shop", "{name}")),
            secrets=TenantSecrets(
                app_secret=SecretStr("a"), access_token=SecretStr("b"), verify_token=SecretStr("c")
            ),
            phone_number_ids=["777"],
        )
    )
    await pool.close()
    settings = ConversationSettings(
        nats_url=nats_server.url,
        database_url=database_url,
        secret_keys=DEV_SECRET_KEYS,
        http_port=free_port(),
        burst_window_s=0.4,
        turn_deadline_s=1.5,
        log_json=False,
        local_jwks=inline_jwks(token_issuer),
    )
    app = await create(settings)
    stop = asyncio.Event()
    server = asyncio.create_task(serve([app], stop))
    bus = Bus(nats_server.url, name="harness")
    await bus.connect()
    nc = await nats.connect(nats_server.url)
    harness = Harness(
        f"http://127.0.0.1:{settings.http_port}",
        bus,
        nc,
        tenant,
        bearer(token_issuer, tenant),
        database_url,
    )

    async def knowledge_memory(msg: Any) -> None:
        # Stands in for the knowledge service's memory responder (its own tests cover it).
        request = EraseLeadMemory.model_validate_json(msg.data)
        harness.memory_erasures.append(request.lead)
        await msg.respond(MemoryResult(erased=2).model_dump_json().encode())

    await nc.subscribe(KNOWLEDGE_MEMORY_ERASE.subject(tenant=tenant), cb=knowledge_memory)
    async with httpx.AsyncClient() as client:

        async def ready() -> bool:
            try:
                return (await client.get(f"{harness.base_url}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, timeout=20, what="conversation service ready")
    try:
        yield harness
    finally:
        stop.set()
        await server
        await nc.close()
        await bus.close()
        nats_server.stop()
        drop_database(postgres_admin_url, dbname)


def subject_of(channel: subjects.Channel, tenant: str) -> str:
    return channel.subject(tenant=tenant)
