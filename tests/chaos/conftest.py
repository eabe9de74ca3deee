"""Chaos rig: servers the test owns (nats-server with file storage, a private PostgreSQL), the
whole system as processes (bench/load_system.py), and a load that retries like Meta does.

Every process is started and ended by its PID, on loopback; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskpilot.runtime.testing import eventually

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from load_system import (
    FAQS,
    GREETINGS,
    HANDOFFS,
    LoadTenant,
    Sends,
    System,
    dead_letters,
    letters_by_wamid,
    load_tenants,
    seed_tenants,
    until_idle,
)

from taskpilot.ingest.meta import new_wamid
from taskpilot.runtime.servers import (
    NatsServer,
    PostgresServer,
    create_database,
)


def scale(default: int) -> int:
    """Message counts shrink with TASKPILOT_CHAOS_SCALE (e.g. 0.1 for a quick look)."""
    return max(20, int(default * float(os.environ.get("TASKPILOT_CHAOS_SCALE", "1"))))


@dataclass
class Owned:
    nats: NatsServer
    postgres: PostgresServer
    database_url: str
    root: Path


@pytest.fixture
def owned(tmp_path: Path) -> Any:
    nats = NatsServer(tmp_path / "nats").start()
    postgres = PostgresServer(tmp_path / "postgres").start()
    try:
        yield Owned(nats, postgres, create_database(postgres.admin_url, "taskpilot"), tmp_path)
    finally:
        nats.stop()
        postgres.remove()


@pytest.fixture
async def system(owned: Owned) -> AsyncIterator[System]:
    system = System(owned.nats, owned.database_url, owned.root)
    env = {
        "TASKPILOT_CONVERSATION_TURN_DEADLINE_S": "20",
        "TASKPILOT_INGEST_RETRY_SCALE": "0.1",
    }
    try:
        await system.start(env)
        yield system
    finally:
        system.stop()


@dataclass
class Posted:
    tenant: LoadTenant
    lead: str
    wamid: str
    text: str
    posted_at: float = 0.0
    accepted_at: float | None = None
    attempts: int = 0


@dataclass
class Load:
    """One message per lead (so each must get exactly one send), posted open-loop at ``rate``;
    a refused or failed webhook is posted again with the same wamid, as Meta does."""

    system: System
    tenants: list[LoadTenant]
    posted: list[Posted] = field(default_factory=list)
    sends: Sends | None = None

    @classmethod
    async def ready(cls, system: System, tenants: int = 10) -> Load:
        chosen = load_tenants(tenants, prefix="chaos")
        await seed_tenants(system, chosen)
        load = cls(system, chosen)
        load.sends = Sends(system)
        load.sends.start()
        return load

    def message(self, i: int, handoffs: bool = True) -> Posted:
        tenant = self.tenants[i % len(self.tenants)]
        kinds = (GREETINGS, FAQS, HANDOFFS) if handoffs else (GREETINGS, FAQS)
        text = random.Random(i).choice(kinds[i % len(kinds)])
        return Posted(tenant, f"7{i:09d}", new_wamid(), text)

    async def _post(self, client: httpx.AsyncClient, item: Posted, give_up_s: float) -> None:
        body, headers = item.tenant.webhook(item.lead, item.text, item.wamid)
        item.posted_at = time.time()
        deadline = time.monotonic() + give_up_s
        delay = 0.5
        while time.monotonic() < deadline:
            item.attempts += 1
            try:
                url = f"{self.system.url('ingest')}/webhooks/whatsapp/{item.tenant.id}"
                response = await client.post(url, content=body, headers=headers)
                if response.status_code == 200:
                    item.accepted_at = time.time()
                    return
            except (httpx.HTTPError, KeyError):
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def run(self, count: int, rate: float, give_up_s: float = 600.0, **kw: Any) -> None:
        items = [self.message(len(self.posted) + i, **kw) for i in range(count)]
        self.posted += items
        async with httpx.AsyncClient(timeout=30) as client:
            tasks = []
            start = time.monotonic()
            for i, item in enumerate(items):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                tasks.append(asyncio.create_task(self._post(client, item, give_up_s)))
            await asyncio.gather(*tasks)

    def answered(self) -> int:
        assert self.sends is not None
        return sum(1 for p in self.posted if p.lead in self.sends.by_lead)

    async def until_answered(self, count: int, timeout: float) -> None:
        async def enough() -> bool:
            return self.answered() >= count

        await eventually(enough, timeout=timeout, interval=0.5, what=f"{count} answered")

    async def settle(self, timeout: float) -> dict[str, Any]:
        """Wait for every lead's send (or its dead letter), then for the whole bus to be idle
        (every consumer with nothing pending or unacknowledged: no second send can still be
        on its way); count what has no outcome, what was sent twice and what stayed busy."""
        assert self.sends is not None
        sends = self.sends
        letters: dict[str, str] = {}
        missing: list[Posted] = []

        async def outcomes() -> bool:
            nonlocal letters, missing
            missing = [p for p in self.posted if p.lead not in sends.by_lead]
            if missing:
                letters = letters_by_wamid(await dead_letters(self.system.nats.url))
                missing = [p for p in missing if p.wamid not in letters]
            return not missing

        started = time.monotonic()
        with contextlib.suppress(AssertionError):  # what is still missing is reported
            await eventually(outcomes, timeout=timeout, interval=2.0, what="every outcome")
        left = max(60.0, timeout - (time.monotonic() - started))
        busy = await until_idle(self.system.nats.url, left)
        duplicates = {lead: len(sent) for lead, sent in sends.by_lead.items() if len(sent) > 1}
        return {
            "messages": len(self.posted),
            "without_outcome": [p.wamid for p in missing],
            "never_accepted": sum(1 for p in self.posted if p.accepted_at is None),
            "dead_lettered": sum(1 for p in self.posted if p.wamid in letters),
            "duplicates": duplicates,
            "busy_consumers": busy,
            "webhook_retries": sum(p.attempts - 1 for p in self.posted),
        }

    async def close(self) -> None:
        if self.sends is not None:
            await self.sends.stop()
