"""The servers under the services restart mid-load: nats-server (file storage), cleanly and
by SIGKILL, and PostgreSQL. The test owns both servers (a private PostgreSQL of its own: the
machine's shared server is not the test's to restart). Same promise: every message ends in
one send or a dead letter, none is sent twice."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.chaos.conftest import Load, Owned, System, scale

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.chaos,
    pytest.mark.timeout(2400),
]


async def test_nats_server_restarts_mid_load(system: System, owned: Owned) -> None:
    total = scale(1500)
    load = await Load.ready(system)
    try:
        writing = asyncio.create_task(load.run(total, rate=10.0))
        for n, sig in enumerate((signal.SIGTERM, signal.SIGKILL), start=1):
            await load.until_answered(total * n // 3, timeout=600)
            await asyncio.to_thread(owned.nats.stop, sig)
            await asyncio.to_thread(owned.nats.start)  # same port, same store
            print(f"nats-server restarted ({sig.name}) at {load.answered()} answered")
        await writing
        result = await load.settle(timeout=900)
    finally:
        await load.close()
    print(result | {"duplicates": len(result["duplicates"])})
    assert result["without_outcome"] == []
    assert result["duplicates"] == {}
    assert result["busy_consumers"] == {}


async def test_postgresql_restarts_mid_load(system: System, owned: Owned) -> None:
    total = scale(1500)
    load = await Load.ready(system)
    try:
        writing = asyncio.create_task(load.run(total, rate=10.0))
        for n, sig in enumerate((signal.SIGINT, signal.SIGKILL), start=1):
            await load.until_answered(total * n // 3, timeout=600)
            await asyncio.to_thread(owned.postgres.stop, sig)
            await asyncio.to_thread(owned.postgres.start)
            print(f"postgres restarted ({sig.name}) at {load.answered()} answered")
        await writing
        result = await load.settle(timeout=900)
    finally:
        await load.close()
    print(result | {"duplicates": len(result["duplicates"])})
    assert result["without_outcome"] == []
    assert result["duplicates"] == {}
    assert result["busy_consumers"] == {}
