"""The analytics service served for real (uvicorn on loopback) with its own NATS and database,
two tenants with a history each, and a stand-in for the sibling services that records calls."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from pydantic import SecretStr

from taskpilot.analytics.app import create
from taskpilot.analytics.auth import LocalIssuer
from taskpilot.analytics.repository import ProjectionStore
from taskpilot.analytics.settings import AnalyticsSettings
from taskpilot.runtime.db import open_pool
from taskpilot.runtime.host import serve
from taskpilot.runtime.servers import free_port
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import eventually
from taskpilot.tenancy import BusinessProfile, SecretBox, Tenant, TenantDirectory, TenantSecrets

log = logging.getLogger(__name__)


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
class Siblings:
    """Conversation, knowledge, tools and ingest in one stand-in: it records every call."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
        async def record(path: str, request: Request) -> dict[str, Any]:
            body = await request.body()
            self.calls.append(
                {
                    "method": request.method,
                    "path": "/" + path,
                    "params": dict(request.query_params),
                    "body": body,
                    "headers": dict(request.headers),
                }
            )
            return {"ok": True}

        return app


@dataclass
class Api:
    base_url: str
    issuer: LocalIssuer
    store: ProjectionStore
    siblings: Siblings
    database_url: str
    nats_url: str

    def token(self, tenant: str | None, role: str = "owner", name: str | None = None) -> str:
        return self.issuer.issue(
            tenant_id=tenant, roles=[role], subject=f"{role}-{tenant}", name=name
        )

    def headers(self, tenant: str | None, role: str = "owner") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(tenant, role)}"}


@asynccontextmanager
async def serving(app: FastAPI, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with httpx.AsyncClient() as client:

            async def up() -> bool:
                try:
                    await client.get(f"http://127.0.0.1:{port}/")
                except httpx.HTTPError:
                    return False
                return True

            await eventually(up, timeout=10, what="stand-in up")
        yield
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def running_analytics(
    nats_url: str,
    database_url: str,
    data_dir: Path,
    tenants: list[Tenant],
    **overrides: Any,
) -> AsyncIterator[Api]:
    pool = await open_pool(database_url, max_size=2)
    directory = TenantDirectory(pool, SecretBox.from_setting(DEV_SECRET_KEYS))
    await directory.ensure_schema()
    for tenant in tenants:
        await directory.upsert(tenant)
    siblings = Siblings()
    sibling_port, port = free_port(), free_port()
    sibling_url = f"http://127.0.0.1:{sibling_port}"
    options: dict[str, Any] = {
        "conversation_url": sibling_url,
        "knowledge_url": sibling_url,
        "tools_url": sibling_url,
        "ingest_url": sibling_url,
        "sandbox_url": sibling_url,
        "public_webhook_base": "https://hooks.example.com",
        "web_dir": data_dir / "no-web",
        **overrides,
    }
    settings = AnalyticsSettings(
        nats_url=nats_url,
        database_url=database_url,
        secret_keys=DEV_SECRET_KEYS,
        data_dir=data_dir,
        http_port=port,
        log_json=False,
        **options,
    )
    app = await create(settings)
    stop = asyncio.Event()
    async with serving(siblings.app(), sibling_port):
        task = asyncio.create_task(serve([app], stop))
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client:

            async def ready() -> bool:
                try:
                    return (await client.get(f"{base}/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ready, timeout=20, what="analytics ready")
        try:
            yield Api(
                base,
                LocalIssuer.in_data_dir(data_dir),
                ProjectionStore(pool),
                siblings,
                database_url,
                nats_url,
            )
        finally:
            stop.set()
            await stopped(task)
            await pool.close()


async def stopped(task: asyncio.Task[None], within: float = 20.0) -> None:
    """Wait for the service to stop; past ``within``, cancel it (and say so) rather than hang
    the suite on a shutdown bug that is not what these tests are about."""
    done, _ = await asyncio.wait({task}, timeout=within)
    if not done:
        log.warning("analytics did not stop within %.0f s; cancelling it", within)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:6]
