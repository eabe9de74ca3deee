"""The services with an HTTP API as their own processes (conversation, knowledge, tools,
analytics, ingest and the Graph API stand-in) on a fresh nats-server and database, three
tenants, and credentials for each: the stage of the HTTP attack suite and the OpenAPI fuzzing.

The siblings verify analytics' local-issuer tokens with the key set they fetch from analytics'
``/.well-known/jwks.json`` (the embedded default), and API keys in the shared database.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from taskpilot.runtime.db import open_pool
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing.system import ProcessSystem, process_system
from taskpilot.tenancy import BusinessProfile, SecretBox, Tenant, TenantDirectory, TenantSecrets

SERVICES = ("conversation", "knowledge", "tools", "analytics", "ingest")
TENANTS = ("shopa", "shopb", "fuzzed")
"""A attacks B; the fuzzing has a tenant of its own (it erases, deletes and rotates)."""


def tenant_record(tenant_id: str, number: str) -> Tenant:
    return Tenant(
        id=tenant_id,
        name=f"Shop {tenant_id}",
        profile=BusinessProfile(name=f"Shop {tenant_id}"),
        secrets=TenantSecrets(
            app_secret=SecretStr(f"app-{tenant_id}"),
            access_token=SecretStr(f"token-{tenant_id}"),
            verify_token=SecretStr(f"verify-{tenant_id}"),
        ),
        phone_number_ids=[number],
    )


@dataclass
class Guarded(ProcessSystem):
    api_keys: dict[str, str] = field(default_factory=dict)
    """An owner API key per tenant, made through analytics once the services are up."""

    def token(self, tenant: str | None, role: str = "owner") -> str:
        return self.issuer.issue(tenant_id=tenant, roles=[role], subject=f"{role}@{tenant}")

    def bearer(self, tenant: str | None, role: str = "owner") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(tenant, role)}"}


@pytest.fixture(scope="session")
def guarded_processes(
    postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Guarded]:
    data = tmp_path_factory.mktemp("guarded")
    logs = Path(os.environ.get("TASKPILOT_TEST_OUTPUT", data)) / "logs-security"
    quiet = {"TASKPILOT_LOG_LEVEL": "WARNING", "TASKPILOT_CONVERSATION_TURN_DEADLINE_S": "1"}
    with process_system(postgres_admin_url, data, SERVICES, logs, quiet) as stage:
        yield Guarded(stage.processes, stage.nats_url, stage.database_url, stage.data, logs)


@pytest.fixture(scope="session")
async def guarded(guarded_processes: Guarded) -> AsyncIterator[Guarded]:
    await guarded_processes.wait_ready(timeout=120)
    pool = await open_pool(guarded_processes.database_url, max_size=1)
    try:
        directory = TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS))
        for n, tenant in enumerate(TENANTS):
            await directory.upsert(tenant_record(tenant, f"5550{n}00{n}"))
    finally:
        await pool.close()
    async with httpx.AsyncClient(base_url=guarded_processes.url("analytics"), timeout=30) as api:
        for tenant in TENANTS:
            response = await api.post(
                f"/v1/tenants/{tenant}/api-keys",
                json={"name": "crm sync", "roles": ["owner"]},
                headers=guarded_processes.bearer(tenant),
            )
            assert response.status_code == 201, response.text
            guarded_processes.api_keys[tenant] = response.json()["key"]
    yield guarded_processes
