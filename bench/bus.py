"""The bus's own cost: CPU per JetStream publish and per delivery, ours against bare nats-py.

    .venv/bin/python bench/bus.py [--messages 20000]

On a private nats-server (file storage), in one process, one after the other:

1. **publish, bare**: nats-py ``js.publish`` of bytes already encoded, with the message id
   header, 200 awaited together (as the relay does);
2. **publish, ours**: ``Bus.publish`` of a typed contract (encode, headers with tenant, type,
   correlation and ``traceparent``, the ack);
3. **consume, bare**: a durable pull consumer, ``fetch`` of 256 and an ack each;
4. **consume, ours**: ``subscribe`` with a handler that does nothing (the pull engine, the fair
   queue, validation into the contract, tenant scope, span, metrics, the ack).

Reports client CPU per message (this process only; the server's is not counted) and the rate,
and ours as a ratio to bare. A lead message costs about 9 publishes and 25 deliveries across
the services, so this is the share of ``bench/load.py``'s CPU per message the bus itself takes.
Figures go to stdout and bench/results/bus.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig

from taskpilot.contracts import subjects
from taskpilot.runtime.bus import Bus, ensure_streams, headers_for
from taskpilot.runtime.consumer import ConsumerPolicy, ConsumerSpec, subscribe
from taskpilot.runtime.servers import NatsServer
from taskpilot.runtime.telemetry import setup_tracing
from taskpilot.runtime.testing.contracts import Ping


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measured(n: int, work: Callable[[], Awaitable[None]]) -> dict[str, float]:
    cpu, wall = cpu_s(), time.perf_counter()
    await work()
    cpu, wall = cpu_s() - cpu, time.perf_counter() - wall
    return {"cpu_us_per_msg": 1e6 * cpu / n, "msgs_per_s": n / wall}


def messages(run: str, n: int) -> list[Ping]:
    return [
        Ping(tenant_id=f"t{i % 50}", correlation_id=str(uuid.uuid4()), run=run, n=i)
        for i in range(n)
    ]


async def publish_bare(bus: Bus, run: str, n: int) -> dict[str, float]:
    encoded = [(m.subject(), m.to_bytes(), headers_for(m)) for m in messages(run, n)]

    async def work() -> None:
        for i in range(0, n, 200):
            await asyncio.gather(
                *(bus.js.publish(s, b, headers=h) for s, b, h in encoded[i : i + 200])
            )

    return await measured(n, work)


async def publish_ours(bus: Bus, run: str, n: int) -> dict[str, float]:
    typed = messages(run, n)

    async def work() -> None:
        for i in range(0, n, 200):
            await asyncio.gather(*(bus.publish(m) for m in typed[i : i + 200]))

    return await measured(n, work)


async def consume_bare(bus: Bus, run: str, n: int) -> dict[str, float]:
    sub = await bus.js.pull_subscribe(
        f"tools.*.ping_{run}",
        durable=f"bare-{run}",
        stream=subjects.TOOLS.name,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=16_384),
    )

    async def work() -> None:
        seen = 0
        while seen < n:
            for msg in await sub.fetch(256, timeout=5):
                await msg.ack()
                seen += 1

    return await measured(n, work)


async def consume_ours(bus: Bus, run: str, n: int) -> dict[str, float]:
    done = asyncio.Event()
    seen = 0

    async def nothing(message: Ping) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            done.set()

    spec = ConsumerSpec(
        f"ours-{run}", subjects.TOOLS, f"tools.*.ping_{run}", ConsumerPolicy(workers=8)
    )
    subscribe(bus, spec, Ping, nothing)

    async def work() -> None:
        await bus.start()
        await done.wait()

    return await measured(n, work)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    setup_tracing("bench-bus")  # no exporter: spans as the services make them by default
    nats = NatsServer(Path(tempfile.mkdtemp(prefix="taskpilot-bus-")) / "nats").start()
    bus = Bus(nats.url, name="bench-bus")
    try:
        await bus.connect()
        await ensure_streams(bus.js)
        n = args.messages
        await publish_ours(bus, "warm" + uuid.uuid4().hex[:6], 500)
        bare_run, ours_run = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
        print(f"{n} messages each ...", flush=True)
        results: dict[str, Any] = {"benchmark": "bus", "messages": n}
        results["publish_bare"] = await publish_bare(bus, bare_run, n)
        results["publish_ours"] = await publish_ours(bus, ours_run, n)
        results["consume_bare"] = await consume_bare(bus, bare_run, n)
        results["consume_ours"] = await consume_ours(bus, ours_run, n)
    finally:
        await bus.close()
        nats.stop()
    for step in ("publish", "consume"):
        bare, ours = results[f"{step}_bare"], results[f"{step}_ours"]
        results[f"{step}_cpu_ratio"] = ours["cpu_us_per_msg"] / bare["cpu_us_per_msg"]
        for kind, r in (("bare", bare), ("ours", ours)):
            print(
                f"  {step:<8} {kind:<5} {r['cpu_us_per_msg']:6.0f} us CPU/msg"
                f"  {r['msgs_per_s']:8.0f} msgs/s"
            )
        print(f"  {step:<8} ours / bare CPU: {results[f'{step}_cpu_ratio']:.2f} x")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    results = asyncio.run(main(parser.parse_args()))
    out = Path(__file__).parent / "results" / "bus.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
