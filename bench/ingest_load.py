"""The load generator of bench/ingest.py; it runs in a process of its own.

Plain asyncio protocols on uvloop with httptools' response parser, keep-alive HTTP/1.1
connections and requests built before the clock starts, so the client costs little CPU next
to the server it measures (both share the machine's cores).

Two modes:

* closed loop: ``connections`` clients each send a request as soon as the previous one was
  answered; the server's maximum throughput at that concurrency.
* open loop: request ``i`` is due at ``start + i / rate`` whatever the earlier ones do; a
  request waits for a free connection when all are busy (at most ``connections`` in flight).
  Latency is counted from the moment it was due, so a server that falls behind shows it
  (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httptools

from taskpilot.cli import demo
from taskpilot.ingest.meta import new_wamid, signed, text_webhook


@dataclass
class LoadSpec:
    port: int
    path: str
    mode: str  # "closed" | "open"
    connections: int
    warmup_s: float
    duration_s: float
    rate: float = 0.0
    lead_prefix: str = "3460"
    max_requests: int = 150_000


@dataclass
class _Outcome:
    due: float
    sent: float = 0.0
    done: float = 0.0
    status: int = 0


def build_requests(spec: LoadSpec, count: int) -> list[bytes]:
    """Signed webhooks, each with its own lead and wamid, as Meta sends them."""
    requests = []
    for i in range(count):
        payload = text_webhook(
            demo.DEMO_NUMBER, f"{spec.lead_prefix}{i:08d}", "hello, is it open today?", new_wamid()
        )
        body, headers = signed(payload, demo.DEMO_APP_SECRET)
        head = (
            f"POST {spec.path} HTTP/1.1\r\nHost: 127.0.0.1:{spec.port}\r\n"
            f"Content-Type: application/json\r\n"
            f"X-Hub-Signature-256: {headers['X-Hub-Signature-256']}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))

    async def request(self, raw: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


async def _connect(port: int, count: int) -> list[_Connection]:
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(count):
        _, protocol = await loop.create_connection(_Connection, "127.0.0.1", port)
        connections.append(protocol)
    return connections


async def _closed(spec: LoadSpec, requests: list[bytes]) -> list[_Outcome]:
    connections = await _connect(spec.port, spec.connections)
    outcomes: list[_Outcome] = []
    start = time.perf_counter()
    end = start + spec.warmup_s + spec.duration_s
    next_index = 0

    async def client(conn: _Connection) -> None:
        nonlocal next_index
        while True:
            now = time.perf_counter()
            if now >= end or next_index >= len(requests):
                return
            raw = requests[next_index]
            next_index += 1
            outcome = _Outcome(due=now, sent=now)
            try:
                outcome.status = await conn.request(raw)
            except ConnectionError:
                outcome.status = -1
            outcome.done = time.perf_counter()
            outcomes.append(outcome)
            if conn.lost:
                return

    await asyncio.gather(*(client(c) for c in connections))
    _close(connections)
    return outcomes


async def _open(spec: LoadSpec, requests: list[bytes]) -> list[_Outcome]:
    connections = await _connect(spec.port, spec.connections)
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    for conn in connections:
        idle.put_nowait(conn)
    total = min(len(requests), int(spec.rate * (spec.warmup_s + spec.duration_s)))
    outcomes = [_Outcome(due=0.0) for _ in range(total)]
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, conn: _Connection) -> None:
        outcome = outcomes[i]
        outcome.sent = time.perf_counter()
        try:
            outcome.status = await conn.request(requests[i])
        except ConnectionError:
            outcome.status = -1
        outcome.done = time.perf_counter()
        if not conn.lost:
            idle.put_nowait(conn)

    start = time.perf_counter()
    for i in range(total):
        due = start + i / spec.rate
        outcomes[i].due = due
        delay = due - time.perf_counter()
        if delay > 0.0005:  # the loop's timer is good to about a millisecond: batch below it
            await asyncio.sleep(delay)
        conn = await idle.get()
        task = asyncio.create_task(one(i, conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    _close(connections)
    return outcomes


def _close(connections: list[_Connection]) -> None:
    for conn in connections:
        if conn.transport is not None:
            conn.transport.close()


def run(spec: LoadSpec) -> dict[str, Any]:
    """Build the requests, then drive the load; the figures of the measured window."""
    import uvloop

    if spec.mode == "open":
        count = int(spec.rate * (spec.warmup_s + spec.duration_s)) + 1
    else:
        count = spec.max_requests
    requests = build_requests(spec, count)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    runner = _open if spec.mode == "open" else _closed
    everything = uvloop.run(runner(spec, requests))
    start = min(o.due for o in everything)
    measured = [o for o in everything if o.due >= start + spec.warmup_s]
    figures = _figures(measured, time.process_time() - cpu0, time.perf_counter() - wall0)
    return figures | {"answered_total": sum(1 for o in everything if o.status > 0)}


def _figures(outcomes: list[_Outcome], cpu_s: float, wall_s: float) -> dict[str, Any]:
    ok = [o for o in outcomes if o.status == 200]
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
    window = max(o.done for o in outcomes) - min(o.due for o in outcomes) if outcomes else 0.0
    return {
        "requests": len(outcomes),
        "ok": len(ok),
        "statuses": statuses,
        "window_s": window,
        "throughput_rps": len(ok) / window if window > 0 else 0.0,
        "ack_ms": [(o.done - o.due) * 1000 for o in ok],
        "service_ms": [(o.done - o.sent) * 1000 for o in ok],
        "client_cpu_s": cpu_s,
        "client_wall_s": wall_s,
    }
