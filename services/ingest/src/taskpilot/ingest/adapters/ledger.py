"""The ledger of sends Meta accepted (JetStream KV)."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from taskpilot.runtime.kv import key_value


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

    async def record(self, command_id: str, wamid: str) -> None:
        await self._kv.put(command_id, wamid.encode())
