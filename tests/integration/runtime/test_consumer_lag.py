"""The consumer lag gauge against a real JetStream: what waits for delivery plus what is
delivered and not yet acknowledged, per durable consumer, back to 0 once everything is acked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import subscribe
from taskpilot.runtime.testing import eventually
from tests.integration.runtime.conftest import Work, connected, work_spec

pytestmark = pytest.mark.asyncio(loop_scope="session")

MESSAGES = 12


async def test_lag_counts_pending_and_unacknowledged_until_acked(
    make_bus: Callable[..., Bus], run_id: str
) -> None:
    bus = await connected(make_bus())
    release = asyncio.Event()

    async def work(message: Work) -> None:
        await release.wait()

    # A lookahead of 4: the gauge must count both the 4 held (ack pending) and the 8 waiting.
    spec = work_spec(run_id, workers=2, lookahead=4)
    subscribe(bus, spec, Work, work)
    for n in range(MESSAGES):
        await bus.publish(Work(tenant_id="t1", correlation_id="c", run=run_id, lead="l", n=n))
    await bus.start()
    consumer = next(c for c in bus.consumers if c.settings.durable == spec.durable)

    def gauge() -> float | None:
        return REGISTRY.get_sample_value("taskpilot_consumer_lag", {"consumer": spec.durable})

    async def lag_is(expected: int) -> bool:
        return await consumer.report_lag() == expected and gauge() == expected

    await eventually(
        lambda: lag_is(MESSAGES), interval=0.1, what="every message counted while blocked"
    )
    release.set()
    await eventually(lambda: lag_is(0), interval=0.1, what="lag back to 0 once acknowledged")
