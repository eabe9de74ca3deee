"""Service processes for tests, started and ended by PID, and condition waits with deadlines."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Await ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = await check()
            if result:
                return result
            last = result
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)


def python(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run this interpreter in a fresh process (``"-c", code`` or ``"-m", module``) and return
    what it did: for what must not happen in the test runner's own process (a frozen heap,
    process-wide tracing, an import that must never occur). ``env`` adds to the environment."""
    return subprocess.run(
        [sys.executable, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class ServiceProcess:
    """``python -m <module>`` with its own environment, ready when ``/readyz`` says so."""

    module: str
    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    async def wait_ready(self, timeout: float = 60.0) -> None:
        async with httpx.AsyncClient() as client:

            async def ready() -> bool:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.module} exited with {self.process.returncode}; see {self.log_path}"
                    )
                try:
                    response = await client.get(f"{self.base_url}/readyz", timeout=1.0)
                except httpx.HTTPError:
                    return False
                return response.status_code == 200

            await eventually(ready, timeout=timeout, interval=0.1, what=f"{self.module} ready")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code
