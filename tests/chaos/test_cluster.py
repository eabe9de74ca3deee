"""A 3-node NATS cluster on loopback ports (three nats-server processes with routes), every
stream with 3 replicas: the stream leader is killed (SIGKILL) mid-load. Publishing stalls for
the election and resumes (Bus.publish retries for longer than an election, with Nats-Msg-Id),
the consumer carries on: 0 lost, 0 stored twice, every message handled."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import APIError

from taskpilot.contracts import subjects
from taskpilot.runtime.bus import Bus, ensure_streams
from taskpilot.runtime.consumer import subscribe
from taskpilot.runtime.dlq import RUNTIME_STREAMS
from taskpilot.runtime.servers import NatsServer, free_port
from taskpilot.runtime.testing import eventually
from tests.integration.runtime.conftest import Work, work_spec

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    routes = [free_port() for _ in range(3)]
    nodes = [
        NatsServer(
            tmp_path / f"n{i}",
            extra_args=(
                "--server_name",
                f"n{i}",
                "--cluster_name",
                "taskpilot",
                "--cluster",
                f"nats://127.0.0.1:{routes[i]}",
                "--routes",
                ",".join(f"nats://127.0.0.1:{p}" for j, p in enumerate(routes) if j != i),
            ),
        )
        for i in range(3)
    ]
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop(signal.SIGKILL)


async def start_all(nodes: list[NatsServer]) -> None:
    await asyncio.gather(*(asyncio.to_thread(node.start, 60.0) for node in nodes))


async def provisioned(bus: Bus) -> None:
    """The streams, once the cluster has a meta leader (creating fails until then)."""

    async def created() -> bool:
        try:
            await ensure_streams(bus.js, subjects.ALL_STREAMS + RUNTIME_STREAMS, replicas=3)
        except Exception as exc:  # no meta leader yet: JetStream not ready
            raise AssertionError(repr(exc)) from exc
        return True

    await eventually(created, timeout=60, interval=0.5, what="streams created on the cluster")


async def _true(value: bool) -> bool:
    return value


async def kill_the_stream_leader(
    count: int, nodes: list[NatsServer], run: str
) -> tuple[int, int, set[int], float]:
    await start_all(nodes)
    url = ",".join(node.url for node in nodes)
    bus = Bus(url, name="cluster", publish_retry_s=60.0, replicas=3)
    await bus.connect()
    await provisioned(bus)
    handled: set[int] = set()

    async def handle(work: Work) -> None:
        handled.add(work.n)

    subscribe(bus, work_spec(run, workers=8, ack_wait_s=10.0), Work, handle)
    await bus.start()
    stalled = 0.0
    killed_at = 0.0
    try:
        for start in range(0, count, 50):
            if start == count // 3:
                info = await bus.js.stream_info(subjects.TOOLS.name)
                assert info.cluster is not None and info.cluster.leader is not None
                leader = next(n for i, n in enumerate(nodes) if info.cluster.leader == f"n{i}")
                leader.stop(signal.SIGKILL)
                killed_at = time.monotonic()
            before = time.monotonic()
            await asyncio.gather(
                *(
                    bus.publish(
                        Work(tenant_id="t1", correlation_id="c", run=run, lead=f"l{n % 7}", n=n),
                        msg_id=f"{run}-{n}",
                    )
                    for n in range(start, min(count, start + 50))
                )
            )
            stalled = max(stalled, time.monotonic() - before)
        with contextlib.suppress(AssertionError):  # the counts below say what is missing
            await eventually(
                lambda: _true(len(handled) >= count), timeout=120, what="every work handled"
            )

        # Read the whole stream back, up to its last sequence now: every copy stored.
        # The JetStream API may not answer while the cluster re-elects its meta leader.
        async def reader() -> tuple[int, JetStreamContext.PushSubscription]:
            try:
                info = await bus.js.stream_info(subjects.TOOLS.name)
                sub = await bus.js.subscribe(
                    "tools.>", stream=subjects.TOOLS.name, ordered_consumer=True
                )
            except (NatsTimeoutError, APIError) as exc:
                raise AssertionError(repr(exc)) from exc
            return info.state.last_seq, sub

        last, sub = await eventually(reader, timeout=60, interval=0.5, what="a stream reader")
        stored: list[int] = []
        while last:
            msg = await sub.next_msg(timeout=30.0)
            if msg.subject.endswith(f".work_{run}"):
                stored.append(Work.model_validate_json(msg.data).n)
            if msg.metadata.sequence.stream >= last:
                break
        await sub.unsubscribe()
        assert killed_at
    finally:
        await bus.close()
    return len(stored), len(set(stored)), handled, stalled


async def test_stream_leader_killed_mid_load_short(cluster: list[NatsServer]) -> None:
    await _check(300, cluster)


@pytest.mark.chaos
async def test_stream_leader_killed_mid_load(cluster: list[NatsServer]) -> None:
    await _check(3000, cluster)


async def _check(count: int, cluster: list[NatsServer]) -> None:
    stored, distinct, handled, stalled = await kill_the_stream_leader(count, cluster, f"c{count}")
    print(f"stored {stored} ({distinct} distinct), handled {len(handled)}, stall {stalled:.1f} s")
    assert (stored, distinct) == (count, count)  # 0 lost, 0 stored twice
    assert handled == set(range(count))  # and every one handled
