"""The ledger of sends Meta accepted (JetStream KV)."""

from __future__ import annotations

import asyncio
import logging
import time

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from taskpilot.runtime.kv import key_value

log = logging.getLogger(__name__)


class SendLedger:
    """Command id -> wamid of sends Meta accepted (JetStream KV), so a redelivered command
    never reaches Meta twice."""

    BUCKET = "ingest_sends"

    def __init__(self, kv: KeyValue):
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, replicas: int = 1) -> SendLedger:
        return cls(await key_value(js, cls.BUCKET, replicas=replicas))

    async def wamid_of(self, command_id: str) -> str | None:
        try:
            entry = await self._kv.get(command_id)
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    async def record(self, command_id: str, wamid: str, retry_s: float = 30.0) -> None:
        """Keep the wamid of a send Meta accepted. Meta has no idempotency key, so losing this
        write means a redelivered command would send again: a failed write is retried (for
        ``retry_s``, through a leader election or a reconnect) before it gives up."""
        deadline, pause = time.monotonic() + retry_s, 0.05
        while True:
            try:
                await self._kv.put(command_id, wamid.encode())
                return
            except Exception as exc:  # NATS timeouts, no responders, connection reconnecting
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("send ledger write for %s failed (%r); retrying", command_id, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
