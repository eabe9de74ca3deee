"""The send ledger keeps a wamid Meta accepted even when NATS is away at that moment: losing
it would let a redelivered command reach Meta twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from taskpilot.ingest.adapters.ledger import SendLedger
from taskpilot.runtime.servers import NatsServer


async def test_a_wamid_recorded_while_nats_restarts_is_kept(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats").start()
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    try:
        ledger = await SendLedger.open(nc.jetstream())
        await ledger.record("cmd-before", "wamid.before")
        server.stop()
        writing = asyncio.create_task(ledger.record("cmd-during", "wamid.during", retry_s=30))
        await asyncio.wait([writing], timeout=0.5)
        assert not writing.done(), "the write cannot have succeeded with the server down"
        server.start()
        await asyncio.wait_for(writing, timeout=30)
        assert await ledger.wamid_of("cmd-during") == "wamid.during"
        assert await ledger.wamid_of("cmd-before") == "wamid.before"
    finally:
        await nc.close()
        server.stop()


async def test_a_write_that_cannot_land_in_time_fails_loudly(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats").start()
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    try:
        ledger = await SendLedger.open(nc.jetstream())
        server.stop()
        with pytest.raises(Exception):  # noqa: B017 - whatever NATS raised last, not swallowed
            await ledger.record("cmd", "wamid.x", retry_s=1.0)
    finally:
        await nc.close()
