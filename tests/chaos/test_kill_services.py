"""kill -9 every service in turn, then a random one repeatedly, during a multi-tenant load;
each is restarted. Every message still ends in exactly one send (reply or handoff) or a dead
letter: 0 without an outcome, 0 duplicate sends to the Graph stand-in."""

from __future__ import annotations

import asyncio
import random
import signal

import pytest

from tests.chaos.conftest import Load, System, scale

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.chaos,
    pytest.mark.timeout(3600),
]

SERVICES = ("ingest", "conversation", "inference", "knowledge", "tools", "analytics")


async def test_kill_9_each_service_in_turn_and_a_random_one_repeatedly(system: System) -> None:
    total = scale(5000)
    load = await Load.ready(system, tenants=20)
    try:
        writing = asyncio.create_task(load.run(total, rate=12.0))
        victims = [*SERVICES, *random.Random(9).choices(SERVICES, k=4)]
        step = total // (len(victims) + 2)
        for n, victim in enumerate(victims, start=1):
            await load.until_answered(step * n, timeout=900)
            took = await system.restart(victim, signal.SIGKILL)
            print(f"killed and restarted {victim} at {load.answered()} answered ({took:.0f} s)")
        await writing
        result = await load.settle(timeout=900)
    finally:
        await load.close()
    print(result | {"duplicates": len(result["duplicates"])})
    assert result["without_outcome"] == []
    assert result["duplicates"] == {}
    assert result["busy_consumers"] == {}
