"""The whole system as separate OS processes against real NATS and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from taskpilot.cli import demo
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.servers import (
    NatsServer,
    create_database,
    drop_database,
    free_port,
    scratch_database_name,
)
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import ServiceProcess
from taskpilot.runtime.testing.tokens import operator
from taskpilot.tenancy import SecretBox, TenantDirectory
from taskpilot.tenancy.tokens import LocalIssuer

SERVICES = ("ingest", "conversation", "inference", "knowledge", "tools", "analytics")


@dataclass
class System:
    urls: dict[str, str]
    processes: dict[str, ServiceProcess]
    nats_url: str
    database_url: str
    log_dir: Path

    def url(self, name: str) -> str:
        return self.urls[name]

    @property
    def issuer(self) -> LocalIssuer:
        """Analytics' local issuer (its key is in the shared data directory); the other
        services fetch its key set from analytics, as in the embedded default."""
        return LocalIssuer.in_data_dir(Path(self.processes["analytics"].env["TASKPILOT_DATA_DIR"]))


@pytest.fixture(scope="session")
def system_processes(
    postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    # Its own NATS server and database: the services' durable consumers and request-reply
    # queue groups must not share a bus with the in-process services of other suites.
    data = tmp_path_factory.mktemp("system")
    nats_server = NatsServer(data / "nats").start()
    dbname = scratch_database_name()
    database_url = create_database(postgres_admin_url, dbname)
    logs = Path(os.environ.get("TASKPILOT_TEST_OUTPUT", data)) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in (*SERVICES, "sandbox")}
    env = {
        "NATS_URL": nats_server.url,
        "DATABASE_URL": database_url,
        "TASKPILOT_SECRET_KEYS": DEV_SECRET_KEYS,
        "TASKPILOT_DATA_DIR": str(data),
        "TASKPILOT_KNOWLEDGE_QDRANT_PATH": str(data / "qdrant"),
        "TASKPILOT_INGEST_GRAPH_API_BASE": f"http://127.0.0.1:{ports['sandbox']}",
        "PORT": str(ports["sandbox"]),
        **{f"TASKPILOT_{n.upper()}_HTTP_PORT": str(ports[n]) for n in SERVICES},
    }
    processes = {
        "sandbox": ServiceProcess(
            "taskpilot.ingest.sandbox", env, ports["sandbox"], logs / "sandbox.log"
        )
    }
    processes |= {
        n: ServiceProcess(f"taskpilot.{n}", env, ports[n], logs / f"{n}.log") for n in SERVICES
    }
    for process in processes.values():
        process.start()
    try:
        yield System(
            {n: p.base_url for n, p in processes.items()},
            processes,
            nats_server.url,
            database_url,
            logs,
        )
    finally:
        for process in processes.values():
            process.stop()
        nats_server.stop()
        drop_database(postgres_admin_url, dbname)


@pytest.fixture(scope="session")
async def system(system_processes: System) -> AsyncIterator[System]:
    for process in system_processes.processes.values():
        await process.wait_ready()
    pool = await open_pool(system_processes.database_url, max_size=1)
    try:
        directory = TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS))
        await directory.upsert(demo.demo_tenant())
    finally:
        await pool.close()
    faqs = f"{system_processes.url('knowledge')}/v1/tenants/{demo.DEMO_TENANT}/faqs"
    async with httpx.AsyncClient(timeout=30, headers=operator(system_processes.issuer)) as client:
        for question, answer in demo.DEMO_FAQS:
            response = await client.post(faqs, json={"question": question, "answer": answer})
            assert response.status_code == 201, response.text
    yield system_processes
