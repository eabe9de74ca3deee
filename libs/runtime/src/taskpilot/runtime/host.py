"""Hosting services: each as its own process, or all together in one (``taskpilot dev``).

A service's composition root returns a :class:`ServiceApp`; :func:`serve` starts its bus,
background tasks and HTTP server, and stops them in reverse order on SIGTERM/SIGINT, draining
in-flight messages first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI

from taskpilot.runtime.bus import Bus

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


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
                )
            )
            servers.append(server)
            tasks.append(asyncio.create_task(server.serve(), name=f"{app.name}-http"))
            log.info("%s listening on http://%s:%d", app.name, app.host, app.port)
        await stop.wait()
    finally:
        log.info("stopping %s", ", ".join(a.name for a in apps))
        for server in servers:
            server.should_exit = True
        for app in reversed(apps):
            if app.bus is not None:
                with contextlib.suppress(Exception):
                    await app.bus.broker.stop()  # stop pulling, let in-flight handlers finish
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for app in reversed(apps):
            for hook in app.on_stop:
                with contextlib.suppress(Exception):
                    await hook()
            if app.bus is not None:
                with contextlib.suppress(Exception):
                    await app.bus.close()


def run(main: Awaitable[None]) -> None:
    """Run the entry coroutine on uvloop when it is installed (it is with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]
    else:
        uvloop.run(main)  # type: ignore[arg-type]


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
