"""Hosting services: each as its own process, or all together in one (``taskpilot dev``).

A service's composition root returns a :class:`ServiceApp`; :func:`serve` starts its bus,
background tasks and HTTP server. On SIGTERM/SIGINT it stops gracefully, in this order:

1. HTTP servers stop accepting and finish the requests they have (a webhook gets its 200 only
   once its messages are stored), and every consumer stops pulling and hands the deliveries it
   fetched ahead back to JetStream (redelivered at once to another process);
2. running handlers finish and ack, within ``Bus.drain_timeout_s`` (past it they are cancelled
   and their deliveries handed back too); background tasks (a group committer, a relay) keep
   running meanwhile, since handlers may wait on them;
3. background tasks are cancelled, ``on_stop`` hooks run, the NATS connection is drained.

A replacement takes over what was handed back; an ordered consumer's lease is released so it
does not wait for the lease to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from taskpilot.runtime import heap
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.settings import error_lines

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]
_own_process = False  # set by run(): the services served are this process's whole purpose


@dataclass
class ServiceApp:
    name: str
    bus: Bus | None
    http: FastAPI
    host: str
    port: int
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)


class _Server(uvicorn.Server):
    # Several servers share one loop in dev mode: signals are handled once, by `serve`.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(apps: list[ServiceApp], stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    servers: list[_Server] = []
    tasks: list[asyncio.Task[None]] = []
    if _own_process:
        heap.settle()  # built, not yet consuming: freeze what startup made
    try:
        for app in apps:
            if app.bus is not None:
                await app.bus.start()
            for job in app.background:
                tasks.append(asyncio.create_task(_guard(app.name, job), name=f"{app.name}-bg"))
            server = _Server(
                uvicorn.Config(
                    app.http,
                    host=app.host,
                    port=app.port,
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                    timeout_graceful_shutdown=10,
                )
            )
            servers.append(server)
            tasks.append(asyncio.create_task(server.serve(), name=f"{app.name}-http"))
            log.info("%s listening on http://%s:%d", app.name, app.host, app.port)
        await stop.wait()
    finally:
        await _stop(apps, servers, tasks)


async def _stop(
    apps: list[ServiceApp], servers: list[_Server], tasks: list[asyncio.Task[None]]
) -> None:
    log.info("stopping %s", ", ".join(a.name for a in apps))
    for server in servers:
        server.should_exit = True
    http = [t for t in tasks if t.get_name().endswith("-http")]
    buses = [app.bus for app in apps if app.bus is not None]
    timeout = max((bus.drain_timeout_s for bus in buses), default=10.0)
    drains = [asyncio.create_task(bus.drain()) for bus in buses]
    if http or drains:
        _, pending = await asyncio.wait([*http, *drains], timeout=timeout + 5.0)
        if pending:
            log.warning("%d HTTP servers or consumers did not stop in time", len(pending))
    await _cancel(tasks + drains, timeout=5.0)
    for app in reversed(apps):
        for hook in app.on_stop:
            await _bounded(hook(), 10.0, f"{app.name} stop hook")
        if app.bus is not None:
            await _bounded(app.bus.close(), timeout + 5.0, f"{app.name} bus close")
    log.info("stopped %s", ", ".join(a.name for a in apps))


async def _cancel(tasks: list[asyncio.Task[Any]], timeout: float) -> None:
    """Cancel and wait, bounded: a task that swallows its cancellation is named, not awaited
    forever (a stop that hangs is worse than one that leaves a task behind)."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        log.error("task %s did not end when cancelled; left behind", task.get_name())


async def _bounded(step: Awaitable[Any], timeout: float, what: str) -> None:
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait([task], timeout=timeout)
    if not done:
        log.error("%s did not finish in %.0f s; cancelled", what, timeout)
        await _cancel([task], timeout=2.0)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("%s failed: %r", what, task.exception())


def run(main: Awaitable[None]) -> None:
    """Run the entry coroutine on uvloop when it is installed (it is with uvicorn[standard]).

    The process is the service's own: :func:`serve` settles the heap once the services are up
    (:mod:`taskpilot.runtime.heap`), and every garbage collection's pause is measured.

    A setting that fails validation ends the process with status 2 and the setting's name
    and reason on stderr, not a traceback through pydantic."""
    global _own_process
    _own_process = True
    heap.measure_pauses()
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(main)  # type: ignore[arg-type]
        else:
            uvloop.run(main)  # type: ignore[arg-type]
    except ValidationError as exc:
        if not exc.title.endswith("Settings"):
            raise
        for line in error_lines(exc, "<all settings>"):
            print(f"{exc.title}: {line}", file=sys.stderr)
        raise SystemExit(2) from None


async def _guard(name: str, job: Callable[[], Awaitable[None]]) -> None:
    """Keep a background loop running: log and restart it if it crashes."""
    while True:
        try:
            await job()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s background task crashed; restarting in 1 s", name)
            await asyncio.sleep(1.0)
