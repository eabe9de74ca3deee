"""Service processes handing work over: SIGTERM drains and acks (nothing lost, nothing done
twice, no wait for ``ack_wait``); kill -9 loses nothing and, for an ordered consumer, keeps
each lead's order across the takeover."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from taskpilot.runtime.bus import Bus
from taskpilot.runtime.servers import NatsServer, free_port
from taskpilot.runtime.testing import ServiceProcess, eventually
from tests.integration.runtime.conftest import Work, connected
from tests.integration.runtime.worker import Done

pytestmark = pytest.mark.asyncio(loop_scope="session")

LEADS = 20


class Workers:
    def __init__(self, nats_url: str, run: str, logs: Path, **env: str):
        self.nats_url, self.run, self.logs, self.env = nats_url, run, logs, env
        self.started: list[ServiceProcess] = []

    def start(self) -> ServiceProcess:
        port = free_port()
        env = {"NATS_URL": self.nats_url, "WORK_RUN": self.run, "PORT": str(port), **self.env}
        name = f"worker{len(self.started)}.log"
        process = ServiceProcess("tests.integration.runtime.worker", env, port, self.logs / name)
        self.started.append(process.start())
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop(signal.SIGKILL)


@pytest.fixture
async def workers(
    nats_server: NatsServer, run_id: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Workers]]:
    made: list[Workers] = []

    def make(**env: str) -> Workers:
        made.append(Workers(nats_server.url, run_id, tmp_path, **env))
        return made[-1]

    yield make
    for group in made:
        group.stop_all()


class DoneLog:
    """Every ``Done`` of the run, in stream order."""

    def __init__(self, bus: Bus, run: str):
        self.bus, self.run = bus, run
        self.seen: list[Done] = []

    async def start(self) -> None:
        async def record(msg: object) -> None:
            self.seen.append(Done.model_validate_json(msg.data))  # type: ignore[attr-defined]

        await self.bus.js.subscribe(f"tools.*.*.done_{self.run}", cb=record, ordered_consumer=True)

    def distinct(self) -> int:
        return len({(d.lead, d.n) for d in self.seen})


async def load(bus: Bus, run: str, count: int) -> None:
    for start in range(0, count, 100):
        await asyncio.gather(
            *(
                bus.publish(
                    Work(
                        tenant_id=f"t{n % 3}",
                        correlation_id="c",
                        run=run,
                        lead=f"l{n % LEADS}",
                        n=n,
                    )
                )
                for n in range(start, min(count, start + 100))
            )
        )


def in_lead_order(done: list[Done]) -> bool:
    """Each lead's works were first completed in the order they were published."""
    firsts: dict[str, list[int]] = defaultdict(list)
    seen: set[tuple[str, int]] = set()
    for d in done:
        if (d.lead, d.n) not in seen:
            seen.add((d.lead, d.n))
            firsts[d.lead].append(d.n)
    bad = {lead: ns for lead, ns in firsts.items() if ns != sorted(ns)}
    if bad:
        print("out of order:", bad)
        for d in done:
            if d.lead in bad:
                print(d.n, d.pid, d.attempt)
    return not bad


@pytest.mark.parametrize("ordered", ["0", "1"], ids=["unordered", "ordered"])
async def test_sigterm_drains_and_a_new_process_takes_over_without_loss_or_repeat(
    make_bus: Callable[..., Bus], workers: Callable[..., Workers], run_id: str, ordered: str
) -> None:
    group = workers(WORK_ORDERED=ordered, WORK_SECONDS="0.05", WORK_ACK_WAIT_S="60")
    first = group.start()
    await first.wait_ready()
    bus = await connected(make_bus())
    log = DoneLog(bus, run_id)
    await log.start()
    await load(bus, run_id, 800)
    await eventually(lambda: _true(log.distinct() >= 150), timeout=60, what="work under way")

    stopping = time.monotonic()
    second = group.start()
    assert first.process is not None
    first.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(first.process.wait, 30)
    stopped_in = time.monotonic() - stopping
    await second.wait_ready()
    await eventually(lambda: _true(log.distinct() == 800), timeout=40, what="all 800 done")
    took = time.monotonic() - stopping

    assert code == 0 and stopped_in < 20  # drained within its drain timeout, exited cleanly
    assert len(log.seen) == 800  # nothing handled twice: the running ones were acked
    assert len({d.pid for d in log.seen}) == 2  # both did part of the work
    assert took < 40  # never waited for ack_wait (60 s) to get anything back
    if ordered == "1":
        assert in_lead_order(log.seen)


async def test_kill_9_loses_nothing_and_the_standby_keeps_each_leads_order(
    make_bus: Callable[..., Bus], workers: Callable[..., Workers], run_id: str
) -> None:
    group = workers(WORK_ORDERED="1", WORK_SECONDS="0.02", WORK_ACK_WAIT_S="3")
    active, standby = group.start(), group.start()
    await asyncio.gather(active.wait_ready(), standby.wait_ready())
    bus = await connected(make_bus())
    log = DoneLog(bus, run_id)
    await log.start()
    await load(bus, run_id, 1000)
    await eventually(lambda: _true(log.distinct() >= 200), timeout=60, what="work under way")
    holder = {d.pid for d in log.seen}
    assert len(holder) == 1  # one process at a time for an ordered consumer
    victim = active if active.process and active.process.pid in holder else standby
    assert victim.process is not None
    victim.process.send_signal(signal.SIGKILL)
    await eventually(lambda: _true(log.distinct() == 1000), timeout=60, what="all 1000 done")
    repeated = len(log.seen) - 1000
    assert repeated <= 8  # at most what was running in the killed process (8 workers)
    assert in_lead_order(log.seen)


async def _true(value: bool) -> bool:
    return value
