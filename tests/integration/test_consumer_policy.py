"""The uniform consumer policy against a real JetStream: retries, backoff, dead letters, order."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator

import pytest

from taskpilot.contracts import subjects
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.runtime.bus import Bus, ensure_streams
from taskpilot.runtime.consumer import (
    ConsumerPolicy,
    ConsumerSpec,
    PermanentError,
    current_attempt,
    subscribe,
)
from taskpilot.runtime.servers import NatsServer
from taskpilot.runtime.testing import eventually
from taskpilot.runtime.testing.contracts import Ping

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    bus = Bus(nats_server.url, name=f"test-{uuid.uuid4().hex[:6]}")
    await bus.connect()
    await ensure_streams(bus.js)
    yield bus
    await bus.close()


async def dead_letters_for(bus: Bus, consumer: str) -> list[DeadLettered]:
    letters = []
    sub = await bus.js.subscribe(subjects.DEAD_LETTER.wildcard(), ordered_consumer=True)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.2)
            except TimeoutError:
                break
            letter = DeadLettered.model_validate_json(msg.data)
            if letter.origin == consumer:
                letters.append(letter)
    finally:
        await sub.unsubscribe()
    return letters


def spec(run: str, **policy: object) -> ConsumerSpec:
    return ConsumerSpec(
        durable=f"test-{run}",
        stream=subjects.TOOLS,
        filter_subject=f"tools.*.ping_{run}",
        policy=ConsumerPolicy(**policy),  # type: ignore[arg-type]
    )


async def test_failures_are_retried_with_backoff_then_acked(bus: Bus) -> None:
    run, attempts = uuid.uuid4().hex[:8], []

    async def flaky(message: Ping) -> None:
        attempts.append((current_attempt(), asyncio.get_running_loop().time()))
        if current_attempt() < 3:
            raise RuntimeError("transient")

    subscribe(bus, spec(run, backoff_s=(0.3, 0.6), max_deliver=5), Ping, flaky)
    await bus.start()
    await bus.publish(Ping(tenant_id="t1", correlation_id="c", run=run, n=1))
    await eventually(lambda: _ready(len(attempts) == 3), timeout=10, what="three attempts")
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(attempts)]
    assert [a[0] for a in attempts] == [1, 2, 3]
    assert gaps[0] >= 0.25 and gaps[1] >= 0.5  # the schedule, not an immediate hot loop
    assert await dead_letters_for(bus, f"test-{run}") == []


async def _ready(value: bool) -> bool:
    return value


async def test_last_failed_delivery_leaves_a_dead_letter_with_the_cause(bus: Bus) -> None:
    run, seen = uuid.uuid4().hex[:8], []

    async def broken(message: Ping) -> None:
        seen.append(message.n)
        raise ValueError(f"cannot handle {message.n}")

    subscribe(bus, spec(run, backoff_s=(0.05,), max_deliver=3), Ping, broken)
    await bus.start()
    await bus.publish(Ping(tenant_id="t1", correlation_id="corr-9", run=run, n=9))

    async def letter() -> list[DeadLettered]:
        return await dead_letters_for(bus, f"test-{run}")

    [dead] = await eventually(letter, timeout=10, what="dead letter")
    assert seen == [9, 9, 9]
    assert (dead.reason, dead.attempts, dead.tenant_id) == ("max_deliveries", 3, "t1")
    assert "ValueError: cannot handle 9" in dead.error
    assert dead.correlation_id == "corr-9" and dead.stream == "TOOLS"
    assert Ping.model_validate_json(dead.payload).n == 9  # the original, whole


async def test_poison_and_permanent_errors_skip_retries_and_do_not_block(bus: Bus) -> None:
    run, handled = uuid.uuid4().hex[:8], []

    async def handler(message: Ping) -> None:
        if message.n == 2:
            raise PermanentError("unknown product", reason="bad_arguments")
        handled.append(message.n)

    subscribe(bus, spec(run, ordered=True, max_deliver=5), Ping, handler)
    await bus.start()
    await bus.publish(Ping(tenant_id="t1", correlation_id="c", run=run, n=1))
    await bus.publish_raw(f"tools.t1.ping_{run}", b"{not json", {"Tenant-Id": "t1"}, "TOOLS")
    await bus.publish(Ping(tenant_id="t1", correlation_id="c", run=run, n=2))
    await bus.publish(Ping(tenant_id="t1", correlation_id="c", run=run, n=3))
    await eventually(lambda: _ready(handled == [1, 3]), timeout=10, what="messages behind poison")

    async def letters() -> dict[str, DeadLettered] | None:
        found = {d.reason: d for d in await dead_letters_for(bus, f"test-{run}")}
        return found if len(found) == 2 else None

    found = await eventually(letters, timeout=10, what="two dead letters")
    assert (
        found["invalid_message"].attempts == 1 and found["invalid_message"].payload == "{not json"
    )
    assert found["bad_arguments"].attempts == 1


async def test_ordered_consumer_keeps_order_with_many_workers(bus: Bus) -> None:
    run, handled = uuid.uuid4().hex[:8], []

    async def record(message: Ping) -> None:
        handled.append(message.n)

    subscribe(bus, spec(run, ordered=True, workers=8), Ping, record)
    await bus.start()
    for n in range(30):
        await bus.publish(Ping(tenant_id="t1", correlation_id="c", run=run, n=n))
    await eventually(lambda: _ready(len(handled) == 30), timeout=15, what="30 handled")
    assert handled == list(range(30))


async def test_publish_with_same_id_is_stored_once(bus: Bus) -> None:
    ping = Ping(tenant_id="t1", correlation_id="c", run="dedupe", n=1)
    assert await bus.publish(ping, msg_id="same-id") is True
    assert await bus.publish(ping, msg_id="same-id") is False
