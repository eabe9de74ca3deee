"""The semantic cache's store: an in-process index per scope (a matrix product per lookup),
optionally persisted in a JetStream key-value bucket that every inference replica shares.

A replica loads the bucket at start and then follows it (a KV watch), so an answer one replica
stored serves the others; the bucket's TTL expires old entries; a knowledge update purges the
tenant's entries of older versions. Lookups never touch the network.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from taskpilot.inference.domain.cache import (
    CachedAnswer,
    CacheScope,
    Signature,
    best_match,
)
from taskpilot.runtime.kv import key_value

log = logging.getLogger(__name__)


class CacheStore(Protocol):
    """Stored answers of the semantic cache (the cache store port).

    ``lookup`` returns the closest live entry of exactly this scope whose signature equals the
    query's and whose cosine is at least ``min_similarity``, with that cosine; never an entry of
    another tenant, knowledge version, prompt version or language. ``put`` replaces an entry
    with the same id. ``drop_before`` forgets a tenant's entries of knowledge versions older
    than ``version`` and returns how many it forgot.
    """

    async def lookup(
        self,
        scope: CacheScope,
        vector: np.ndarray,
        query: Signature,
        min_similarity: float,
        now: float,
    ) -> tuple[CachedAnswer, float] | None: ...

    async def put(self, entry: CachedAnswer) -> None: ...

    async def drop_before(self, tenant_id: str, version: int) -> int: ...

    async def close(self) -> None: ...


@dataclass
class _ScopeIndex:
    """One scope's entries and their vectors as one matrix, kept in step on every change (a
    lookup is one matrix-vector product, never a rebuild)."""

    entries: list[CachedAnswer] = field(default_factory=list)
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    newest: float = float("-inf")  # the latest creation time seen: "now" for expiry

    def upsert(self, entry: CachedAnswer) -> None:
        row = np.asarray(entry.vector, dtype=np.float32)
        for i, existing in enumerate(self.entries):
            if existing.id == entry.id:
                self.entries[i] = entry
                self.matrix[i] = row
                return
        self.entries.append(entry)
        self.matrix = row[None, :] if not self.matrix.size else np.vstack([self.matrix, row])

    def remove(self, entry_id: str) -> bool:
        keep = [i for i, e in enumerate(self.entries) if e.id != entry_id]
        removed = len(keep) != len(self.entries)
        self.entries = [self.entries[i] for i in keep]
        self.matrix = self.matrix[keep] if keep else np.zeros((0, 0), dtype=np.float32)
        return removed

    def similarities(self, vector: np.ndarray) -> np.ndarray:
        return self.matrix @ vector.astype(np.float32)


class MemoryCacheStore:
    """The in-process index alone: for one process, and the index of :class:`KvCacheStore`."""

    def __init__(self) -> None:
        self._scopes: dict[CacheScope, _ScopeIndex] = {}

    async def lookup(
        self,
        scope: CacheScope,
        vector: np.ndarray,
        query: Signature,
        min_similarity: float,
        now: float,
    ) -> tuple[CachedAnswer, float] | None:
        index = self._scopes.get(scope)
        if index is None or not index.entries:
            return None
        return best_match(
            index.entries, index.similarities(vector).tolist(), query, min_similarity, now
        )

    async def put(self, entry: CachedAnswer) -> None:
        self.add(entry)

    def add(self, entry: CachedAnswer) -> None:
        index = self._scopes.setdefault(entry.scope, _ScopeIndex())
        index.newest = max(index.newest, entry.created_at)
        for expired in [e.id for e in index.entries if e.expires_at <= index.newest]:
            index.remove(expired)  # the bucket's TTL drops them silently: forget them here
        if entry.expires_at > index.newest:  # a late echo of an expired entry stays forgotten
            index.upsert(entry)

    def remove(self, scope: CacheScope, entry_id: str) -> None:
        index = self._scopes.get(scope)
        if index is not None:
            index.remove(entry_id)

    def stale(self, tenant_id: str, version: int) -> list[CachedAnswer]:
        return [
            e
            for scope, index in self._scopes.items()
            if scope.tenant_id == tenant_id and scope.knowledge_version < version
            for e in index.entries
        ]

    async def drop_before(self, tenant_id: str, version: int) -> int:
        stale = self.stale(tenant_id, version)
        for scope in {e.scope for e in stale}:
            del self._scopes[scope]
        return len(stale)

    def __len__(self) -> int:
        return sum(len(i.entries) for i in self._scopes.values())

    async def close(self) -> None:
        self._scopes.clear()


def encode(entry: CachedAnswer) -> bytes:
    data: dict[str, Any] = asdict(entry)
    data["vector"] = base64.b64encode(np.asarray(entry.vector, np.float32).tobytes()).decode()
    for name in ("numbers", "currencies", "plans", "actions", "asks", "stems"):
        data["signature"][name] = sorted(data["signature"][name])
    data["signature"].pop("vocabulary", None)  # a query-side field
    return json.dumps(data, ensure_ascii=False).encode()


def decode(raw: bytes) -> CachedAnswer:
    data = json.loads(raw)
    vector = np.frombuffer(base64.b64decode(data["vector"]), dtype=np.float32)
    sig = data["signature"]
    return CachedAnswer(
        id=data["id"],
        scope=CacheScope(**data["scope"]),
        question=data["question"],
        vector=tuple(float(x) for x in vector),
        signature=Signature(
            intent=sig["intent"],
            numbers=frozenset(sig["numbers"]),
            currencies=frozenset(sig["currencies"]),
            plans=frozenset(sig["plans"]),
            actions=frozenset(sig["actions"]),
            negated=bool(sig["negated"]),
            asks=frozenset(sig.get("asks", ())),
            stems=frozenset(sig.get("stems", ())),
        ),
        text=data["text"],
        tier=data["tier"],
        model=data["model"],
        citations=tuple(data["citations"]),
        created_at=float(data["created_at"]),
        expires_at=float(data["expires_at"]),
    )


def kv_key(entry: CachedAnswer) -> str:
    return f"{entry.scope.key()}.{entry.id}"


class KvCacheStore:
    """The in-process index, persisted in and kept in step with a JetStream KV bucket."""

    ECHO_TIMEOUT_S = 5.0  # a put waits this long for the watch to bring it back

    def __init__(self, kv: KeyValue):
        self._kv = kv
        self._index = MemoryCacheStore()
        self._follower: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()
        self._applied = 0  # the bucket's last revision the index reflects
        self._advanced = asyncio.Condition()

    @classmethod
    async def open(
        cls, js: JetStreamContext, bucket: str, ttl_s: float, replicas: int = 1
    ) -> KvCacheStore:
        store = cls(await key_value(js, bucket, replicas=replicas, ttl=ttl_s))
        await store.start()
        return store

    async def start(self) -> None:
        watcher = await self._kv.watchall()
        self._follower = asyncio.create_task(self._follow(watcher), name="inference-cache-kv")
        await self._loaded.wait()

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        try:
            async for update in watcher:
                if update is None:  # every stored entry has been delivered
                    self._loaded.set()
                    continue
                self._apply(update)
                if update.revision:
                    self._applied = max(self._applied, update.revision)
                    async with self._advanced:
                        self._advanced.notify_all()
        finally:
            self._loaded.set()
            with contextlib.suppress(Exception):
                await watcher.stop()

    def _apply(self, update: KeyValue.Entry) -> None:
        scope_key, _, entry_id = (update.key or "").rpartition(".")
        if update.operation in ("DEL", "PURGE") or not update.value:
            tenant, version, prompt, language = scope_key.split(".", 3)
            self._index.remove(CacheScope(tenant, int(version), prompt, language), entry_id)
            return
        try:
            self._index.add(decode(update.value))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable cache entry %s skipped: %r", update.key, exc)

    async def lookup(
        self,
        scope: CacheScope,
        vector: np.ndarray,
        query: Signature,
        min_similarity: float,
        now: float,
    ) -> tuple[CachedAnswer, float] | None:
        return await self._index.lookup(scope, vector, query, min_similarity, now)

    async def put(self, entry: CachedAnswer) -> None:
        """Store the entry and return once this replica's index holds it. The index changes
        only through the watch, in the bucket's order: an echo of an older put can never
        overwrite a newer entry (a replica adding its own entries directly could)."""
        revision = await self._kv.put(kv_key(entry), encode(entry))
        try:
            await asyncio.wait_for(self._reflects(revision), timeout=self.ECHO_TIMEOUT_S)
        except TimeoutError:
            log.warning("cache watch is %d behind; entry %s added directly", revision, entry.id)
            self._index.add(entry)

    async def _reflects(self, revision: int) -> None:
        async with self._advanced:
            await self._advanced.wait_for(lambda: self._applied >= revision)

    async def drop_before(self, tenant_id: str, version: int) -> int:
        stale = self._index.stale(tenant_id, version)
        await self._index.drop_before(tenant_id, version)
        await self._purge(stale)
        return len(stale)

    async def _purge(self, entries: Iterable[CachedAnswer]) -> None:
        for entry in entries:
            await self._kv.purge(kv_key(entry))

    def __len__(self) -> int:
        return len(self._index)

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
