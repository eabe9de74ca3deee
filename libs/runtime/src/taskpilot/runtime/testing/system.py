"""Services as separate OS processes on a nats-server and a database of their own.

The stage of the end-to-end suite and of the HTTP attack suite: each suite gets its own
nats-server and scratch database, so the services' durable consumers and request-reply queue
groups never share a bus with the in-process services of other suites.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from taskpilot.runtime.servers import (
    NatsServer,
    create_database,
    drop_database,
    free_port,
    scratch_database_name,
)
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing.processes import ServiceProcess
from taskpilot.tenancy.tokens import LocalIssuer

SANDBOX = "sandbox"
"""The Graph API stand-in (``taskpilot.ingest.sandbox``), started beside the services."""


def system_env(
    nats_url: str, database_url: str, data: Path, sandbox_port: int, ports: Mapping[str, int]
) -> dict[str, str]:
    """What every service of one system reads from its environment: the bus, the database,
    the key ring, the shared data directory (analytics' issuer key, Qdrant's store), the Graph
    stand-in, and each service's own HTTP port (``ports``, by service name)."""
    return {
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "TASKPILOT_SECRET_KEYS": DEV_SECRET_KEYS,
        "TASKPILOT_DATA_DIR": str(data),
        "TASKPILOT_KNOWLEDGE_QDRANT_PATH": str(data / "qdrant"),
        "TASKPILOT_INGEST_GRAPH_API_BASE": f"http://127.0.0.1:{sandbox_port}",
        **{f"TASKPILOT_{name.upper()}_HTTP_PORT": str(port) for name, port in ports.items()},
    }


@dataclass
class ProcessSystem:
    processes: dict[str, ServiceProcess]
    nats_url: str
    database_url: str
    data: Path
    log_dir: Path

    def url(self, name: str) -> str:
        return self.processes[name].base_url

    @functools.cached_property
    def issuer(self) -> LocalIssuer:
        """Analytics' local issuer (its key is in the shared data directory); the other
        services fetch its key set from analytics, as in the embedded default."""
        return LocalIssuer.in_data_dir(self.data)

    async def wait_ready(self, timeout: float = 120.0) -> None:
        for process in self.processes.values():
            await process.wait_ready(timeout=timeout)


@contextlib.contextmanager
def process_system(
    postgres_admin_url: str,
    data: Path,
    services: Iterable[str],
    log_dir: Path,
    env: dict[str, str] | None = None,
) -> Iterator[ProcessSystem]:
    """Start ``services`` (``taskpilot.<name>``) and the Graph stand-in; stop them after.

    Every process shares one data directory (analytics' local issuer key, Qdrant's store)
    and one environment; ``env`` adds to it or overrides it.
    """
    names = list(services)
    log_dir.mkdir(parents=True, exist_ok=True)
    nats_server = NatsServer(data / "nats").start()
    dbname = scratch_database_name()
    database_url = create_database(postgres_admin_url, dbname)
    ports = {name: free_port() for name in (*names, SANDBOX)}
    shared = {
        **system_env(
            nats_server.url, database_url, data, ports[SANDBOX], {n: ports[n] for n in names}
        ),
        "PORT": str(ports[SANDBOX]),
        **(env or {}),
    }
    processes = {
        SANDBOX: ServiceProcess(
            "taskpilot.ingest.sandbox", shared, ports[SANDBOX], log_dir / "sandbox.log"
        )
    }
    processes |= {
        n: ServiceProcess(f"taskpilot.{n}", shared, ports[n], log_dir / f"{n}.log") for n in names
    }
    try:
        for process in processes.values():
            process.start()
        yield ProcessSystem(processes, nats_server.url, database_url, data, log_dir)
    finally:
        for process in processes.values():
            process.stop()
        nats_server.stop()
        drop_database(postgres_admin_url, dbname)
