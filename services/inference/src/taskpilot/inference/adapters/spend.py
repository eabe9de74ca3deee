"""The spend ledger: each tenant's model spend per month, shared by every inference replica.

The JetStream KV adapter adds with compare-and-set on the key's revision, so concurrent
replicas never lose an addition; it returns the total before and after, from which the budget
rules tell whether a threshold was just crossed (exactly one writer sees each crossing).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from taskpilot.runtime.kv import key_value


@dataclass(frozen=True)
class Spend:
    usd: float = 0.0
    tokens: int = 0


class SpendLedger(Protocol):
    """Running model spend per (tenant, month) (the spend ledger port).

    ``add`` is atomic across processes and returns (before, after); ``spent`` reads the total.
    """

    async def spent(self, tenant_id: str, month: str) -> Spend: ...

    async def add(
        self, tenant_id: str, month: str, usd: float, tokens: int
    ) -> tuple[Spend, Spend]: ...


class MemorySpendLedger:
    def __init__(self) -> None:
        self._totals: dict[tuple[str, str], Spend] = defaultdict(Spend)

    async def spent(self, tenant_id: str, month: str) -> Spend:
        return self._totals[(tenant_id, month)]

    async def add(self, tenant_id: str, month: str, usd: float, tokens: int) -> tuple[Spend, Spend]:
        before = self._totals[(tenant_id, month)]
        after = Spend(before.usd + usd, before.tokens + tokens)
        self._totals[(tenant_id, month)] = after
        return before, after


def _decode(raw: bytes | None) -> Spend:
    data = json.loads(raw or b"{}")
    return Spend(float(data.get("usd", 0.0)), int(data.get("tokens", 0)))


class KvSpendLedger:
    def __init__(self, kv: KeyValue):
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, replicas: int = 1) -> KvSpendLedger:
        return cls(await key_value(js, bucket, replicas=replicas))

    async def spent(self, tenant_id: str, month: str) -> Spend:
        try:
            return _decode((await self._kv.get(f"{tenant_id}.{month}")).value)
        except KeyNotFoundError:
            return Spend()

    async def add(self, tenant_id: str, month: str, usd: float, tokens: int) -> tuple[Spend, Spend]:
        key = f"{tenant_id}.{month}"
        while True:
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                entry = None
            before = _decode(entry.value if entry else None)
            after = Spend(before.usd + usd, before.tokens + tokens)
            body = json.dumps({"usd": after.usd, "tokens": after.tokens}).encode()
            try:
                if entry is None:
                    await self._kv.create(key, body)
                else:
                    await self._kv.update(key, body, last=entry.revision)
                return before, after
            except KeyWrongLastSequenceError:
                continue  # another replica added first: read again
