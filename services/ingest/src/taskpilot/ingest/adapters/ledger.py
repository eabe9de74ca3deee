"""The ledger of sends Meta accepted (JetStream KV)."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue


class SendLedger:
    """Command id -> wamid of sends Meta accepted (JetStream KV), so a redelivered command
    never reaches Meta twice."""

    BUCKET = "ingest_sends"

    def __init__(self, kv: KeyValue):
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> SendLedger:
        try:
            kv = await js.key_value(cls.BUCKET)
        except Exception:
            kv = await js.create_key_value(bucket=cls.BUCKET, history=1)
        return cls(kv)

    async def wamid_of(self, command_id: str) -> str | None:
        try:
            entry = await self._kv.get(command_id)
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    async def record(self, command_id: str, wamid: str) -> None:
        await self._kv.put(command_id, wamid.encode())
