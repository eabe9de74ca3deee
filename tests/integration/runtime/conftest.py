"""A test message on the TOOLS stream, and buses on the session's nats-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import ClassVar

import pytest

from taskpilot.contracts import Message, subjects
from taskpilot.runtime.bus import Bus, ensure_streams
from taskpilot.runtime.consumer import ConsumerPolicy, ConsumerSpec
from taskpilot.runtime.dlq import RUNTIME_STREAMS
from taskpilot.runtime.servers import NatsServer


class Work(Message):
    """One unit of work of a lead: ``tools.{tenant}.{lead}.work_{run}`` (any stream will do;
    the lead comes before the fact, so an ordered consumer keeps each lead's order)."""

    CHANNEL: ClassVar = subjects.Channel("tools.{tenant}.{lead}.work_{run}", subjects.TOOLS)

    run: str
    lead: str
    n: int

    def subject_parts(self) -> dict[str, str]:
        return {"run": self.run, "lead": self.lead}


def work_spec(run: str, **policy: object) -> ConsumerSpec:
    return ConsumerSpec(
        f"test-work-{run}",
        subjects.TOOLS,
        f"tools.*.*.work_{run}",
        ConsumerPolicy(**policy),  # type: ignore[arg-type]
    )


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def make_bus(nats_server: NatsServer) -> AsyncIterator[Callable[..., Bus]]:
    buses: list[Bus] = []

    def make(url: str | None = None, **options: object) -> Bus:
        bus = Bus(url or nats_server.url, name=f"test-{uuid.uuid4().hex[:6]}", **options)  # type: ignore[arg-type]
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        if bus._nc is not None:
            await bus.close()


async def connected(bus: Bus) -> Bus:
    await bus.connect()
    await ensure_streams(bus.js, subjects.ALL_STREAMS + RUNTIME_STREAMS)
    return bus
