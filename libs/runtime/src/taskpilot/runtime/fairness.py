"""Per-tenant fair scheduling of buffered deliveries (pure; no I/O).

A consumer fetches ahead of its handlers (its *lookahead*) and files each delivery under its
tenant. Workers take the next delivery round-robin over tenants, skipping a tenant that already
has ``tenant_cap`` deliveries in flight, so one tenant's backlog can hold at most ``tenant_cap``
workers while every other tenant's next message is taken as soon as a worker frees.

With ``ordered=True`` deliveries also carry a *key* (e.g. tenant + lead): at most one delivery
per key is in flight and a key's deliveries are handed out in the order they were put, while
other keys of the same tenant proceed. A key can be *held* (a local retry waiting its backoff)
so that nothing behind it overtakes it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Tenant(Generic[T]):
    in_flight: int = 0
    queued: int = 0
    # ordered: key -> its deliveries in order; ready: keys whose head may be handed out
    keys: OrderedDict[str, deque[T]] = field(default_factory=OrderedDict)
    ready: deque[str] = field(default_factory=deque)
    busy: set[str] = field(default_factory=set)
    # unordered: one FIFO
    fifo: deque[T] = field(default_factory=deque)

    def has_ready(self, ordered: bool) -> bool:
        return bool(self.ready) if ordered else bool(self.fifo)


@dataclass(frozen=True)
class Taken(Generic[T]):
    tenant: str
    key: str
    item: T


class FairQueue(Generic[T]):
    """Round-robin over tenants with per-tenant in-flight caps (and per-key order)."""

    def __init__(self, tenant_cap: int, ordered: bool = False):
        if tenant_cap < 1:
            raise ValueError("tenant_cap must be at least 1")
        self.tenant_cap = tenant_cap
        self.ordered = ordered
        self._tenants: dict[str, _Tenant[T]] = {}
        self._ring: deque[str] = deque()  # tenants with queued work, in round-robin order
        self.queued = 0
        self.in_flight = 0

    def __len__(self) -> int:
        return self.queued

    def put(self, tenant: str, key: str, item: T, *, front: bool = False) -> None:
        state = self._tenants.setdefault(tenant, _Tenant())
        if self.ordered:
            items = state.keys.setdefault(key, deque())
            (items.appendleft if front else items.append)(item)
            if len(items) == 1 and key not in state.busy:
                state.ready.append(key)
        else:
            (state.fifo.appendleft if front else state.fifo.append)(item)
        state.queued += 1
        self.queued += 1
        if state.queued == 1:
            self._ring.append(tenant)

    def take(self) -> Taken[T] | None:
        """The next delivery to hand to a worker, or None when nothing is eligible now."""
        for _ in range(len(self._ring)):
            tenant = self._ring[0]
            self._ring.rotate(-1)  # whoever is served goes to the back
            state = self._tenants[tenant]
            if state.in_flight >= self.tenant_cap or not state.has_ready(self.ordered):
                continue
            if self.ordered:
                key = state.ready.popleft()
                items = state.keys[key]
                item = items.popleft()
                if not items:
                    del state.keys[key]
                state.busy.add(key)
            else:
                key, item = "", state.fifo.popleft()
            state.queued -= 1
            state.in_flight += 1
            self.queued -= 1
            self.in_flight += 1
            if not state.queued:
                self._ring.remove(tenant)
            return Taken(tenant, key, item)
        return None

    def done(self, tenant: str, key: str, *, hold: bool = False) -> None:
        """A taken delivery finished. ``hold`` keeps its key blocked until :meth:`release`."""
        state = self._tenants[tenant]
        state.in_flight -= 1
        self.in_flight -= 1
        if self.ordered and not hold:
            self._unblock(state, key)
        self._forget_if_idle(tenant, state)

    def release(self, tenant: str, key: str, item: T) -> None:
        """Put a held key's delivery back at the head of its key and unblock the key."""
        state = self._tenants.setdefault(tenant, _Tenant())
        state.busy.discard(key)
        self.put(tenant, key, item, front=True)
        if key in state.keys and len(state.keys[key]) > 1 and key not in state.ready:
            state.ready.append(key)

    def drain(self) -> list[T]:
        """Remove and return every queued (not in-flight) delivery, oldest key order kept."""
        items: list[T] = []
        for state in self._tenants.values():
            if self.ordered:
                for queue in state.keys.values():
                    items.extend(queue)
                state.keys.clear()
                state.ready.clear()
            else:
                items.extend(state.fifo)
                state.fifo.clear()
            state.queued = 0
        self._ring.clear()
        self.queued = 0
        return items

    def tenant_load(self) -> dict[str, tuple[int, int]]:
        """tenant -> (queued, in flight), for metrics and tests."""
        return {t: (s.queued, s.in_flight) for t, s in self._tenants.items()}

    def _unblock(self, state: _Tenant[T], key: str) -> None:
        state.busy.discard(key)
        if key in state.keys and key not in state.ready:
            state.ready.append(key)

    def _forget_if_idle(self, tenant: str, state: _Tenant[T]) -> None:
        if not state.queued and not state.in_flight and not state.busy:
            del self._tenants[tenant]
