"""The whole system as separate OS processes against real NATS and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from taskpilot.cli import demo
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing.system import ProcessSystem, process_system
from taskpilot.runtime.testing.tokens import operator
from taskpilot.tenancy import SecretBox, TenantDirectory

SERVICES = ("ingest", "conversation", "inference", "knowledge", "tools", "analytics")

System = ProcessSystem


@pytest.fixture(scope="session")
def system_processes(
    postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    data = tmp_path_factory.mktemp("system")
    logs = Path(os.environ.get("TASKPILOT_TEST_OUTPUT", data)) / "logs"
    with process_system(postgres_admin_url, data, SERVICES, logs) as system:
        yield system


@pytest.fixture(scope="session")
async def system(system_processes: System) -> AsyncIterator[System]:
    await system_processes.wait_ready()
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
