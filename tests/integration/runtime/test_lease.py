"""The ordered consumer's lease on a real nats-server: a graceful stop always releases it, so a
successor takes over at once instead of waiting for the expiry (``ack_wait`` plus a margin)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from taskpilot.runtime.bus import Bus
from taskpilot.runtime.lease import Lease, lease_bucket, owner_id
from tests.integration.runtime.conftest import connected

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def held_lease(make_bus: Callable[..., Bus], name: str) -> tuple[Bus, KeyValue, Lease]:
    """A bus, the lease bucket and a lease of that name this process holds."""
    bus = await connected(make_bus())
    kv = await lease_bucket(bus.js)
    lease = Lease(lambda: lease_bucket(bus.js), name, owner_id("a"), ttl_s=60)
    await lease.acquire()
    return bus, kv, lease


async def test_a_renewal_that_landed_unseen_does_not_keep_the_lease_after_release(
    make_bus: Callable[..., Bus], run_id: str
) -> None:
    bus, kv, lease = await held_lease(make_bus, f"lease-{run_id}")
    # A renewal cancelled while in flight: stored by the server, its revision never seen here.
    entry = await kv.get(lease.name)
    value = json.loads(entry.value or b"{}")
    await kv.update(lease.name, json.dumps(value).encode(), last=entry.revision)

    await lease.release()

    with pytest.raises(KeyNotFoundError):
        await kv.get(lease.name)
    successor = Lease(lambda: lease_bucket(bus.js), lease.name, owner_id("b"), ttl_s=60)
    await successor.acquire()  # at once: nothing to wait for
    assert successor.held
    await successor.release()


async def test_release_never_removes_a_lease_someone_else_took_over(
    make_bus: Callable[..., Bus], run_id: str
) -> None:
    _, kv, lease = await held_lease(make_bus, f"lease-{run_id}")
    entry = await kv.get(lease.name)
    taken = {"owner": "b@elsewhere", "renewed_at": 0, "expires_at": 2e9}
    await kv.update(lease.name, json.dumps(taken).encode(), last=entry.revision)

    await lease.release()

    kept = await kv.get(lease.name)
    assert json.loads(kept.value or b"{}")["owner"] == "b@elsewhere"


async def test_releasing_while_renewing_constantly_always_frees_the_lease(
    make_bus: Callable[..., Bus], run_id: str
) -> None:
    bus = await connected(make_bus())
    kv = await lease_bucket(bus.js)
    for attempt in range(30):
        name = f"lease-{run_id}-{attempt}"
        lease = Lease(lambda: lease_bucket(bus.js), name, owner_id("a"), ttl_s=60, renew_s=0.001)
        await lease.acquire()
        await bus.nc.flush()  # let renewals run
        await lease.release()
        with pytest.raises(KeyNotFoundError):
            await kv.get(name)
