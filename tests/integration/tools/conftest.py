"""Real servers for the tools tests: Radicale (CalDAV), the Google and Stripe stand-ins, a
webhook receiver, and the tools service itself built by its composition root, on a NATS server
and a database of its own (the e2e suite runs another tools process on the shared ones).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import caldav
import httpx
import pytest
from nats.aio.msg import Msg

from taskpilot.contracts import Message
from taskpilot.contracts.catalogue import BY_TYPE
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.host import ServiceApp
from taskpilot.runtime.servers import (
    NatsServer,
    create_database,
    drop_database,
    free_port,
    scratch_database_name,
    wait_until,
)
from taskpilot.runtime.settings import DEV_SECRET_KEYS
from taskpilot.runtime.testing import eventually
from taskpilot.runtime.testing.tokens import inline_jwks, operator
from taskpilot.tenancy.tokens import LocalIssuer
from taskpilot.tools.app import create
from taskpilot.tools.settings import ToolsSettings
from tests.integration.tools.standins import GoogleStandIn, Receiver, StripeStandIn, serve

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Radicale:
    url: str
    process: subprocess.Popen[bytes]

    def new_calendar(self, user: str) -> str:
        """A fresh calendar collection owned by ``user``; returns its URL."""
        client = caldav.DAVClient(self.url, username=user, password="unused")
        calendar = client.principal().make_calendar(name="bookings", cal_id=uuid.uuid4().hex)
        return str(calendar.url)


@pytest.fixture(scope="session")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Radicale]:
    store = tmp_path_factory.mktemp("radicale")
    port = free_port()
    with open(store / "radicale.log", "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "radicale",
                f"--storage-filesystem-folder={store / 'collections'}",
                "--auth-type=none",
                f"--server-hosts=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"

    def answers() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, 20, "radicale")
        yield Radicale(url, process)
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session")
def google() -> Iterator[tuple[GoogleStandIn, str]]:
    standin = GoogleStandIn()
    with serve(standin.app()) as url:
        yield standin, url


@pytest.fixture(scope="session")
def stripe_standin() -> Iterator[tuple[StripeStandIn, str]]:
    standin = StripeStandIn()
    with serve(standin.app()) as url:
        yield standin, url


@pytest.fixture(scope="session")
def receiver() -> Iterator[tuple[Receiver, str]]:
    standin = Receiver()
    with serve(standin.app()) as url:
        yield standin, url


@pytest.fixture(scope="session")
def tools_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("tools-nats")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tools_database(postgres_admin_url: str) -> Iterator[str]:
    name = scratch_database_name("tp_tools")
    yield create_database(postgres_admin_url, name)
    drop_database(postgres_admin_url, name)


def tools_settings(nats_url: str, database_url: str, **overrides: Any) -> ToolsSettings:
    values: dict[str, Any] = {
        "nats_url": nats_url,
        "database_url": database_url,
        "secret_keys": DEV_SECRET_KEYS,
        "log_json": False,
        "execute_attempts": 3,
        "execute_retry_s": 0.05,
        "webhook_attempts": 3,
        "webhook_backoff_s": [0.05, 0.1],
        "provider_timeout_s": 5.0,
        "job_ack_wait_s": 3.0,
        "allow_private_targets": True,  # every server in these tests is on loopback
    }
    return ToolsSettings(**(values | overrides))


@pytest.fixture(scope="session")
async def tools_app(
    tools_nats: NatsServer,
    tools_database: str,
    google: tuple[GoogleStandIn, str],
    stripe_standin: tuple[StripeStandIn, str],
    token_issuer: LocalIssuer,
) -> AsyncIterator[ServiceApp]:
    settings = tools_settings(
        tools_nats.url,
        tools_database,
        local_jwks=inline_jwks(token_issuer),
        google_api_base=google[1],
        google_token_url=f"{google[1]}/token",
        stripe_api_base=stripe_standin[1],
    )
    app = await create(settings)
    assert app.bus is not None
    await app.bus.start()
    yield app
    await app.bus.close()
    for hook in app.on_stop:
        await hook()


@pytest.fixture(scope="session")
async def api(tools_app: ServiceApp, token_issuer: LocalIssuer) -> AsyncIterator[httpx.AsyncClient]:
    """The tools API as the dashboard calls it: with an operator's token (tests pick tenants)."""
    transport = httpx.ASGITransport(app=tools_app.http)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://tools", headers=operator(token_issuer)
    ) as client:
        yield client


@pytest.fixture(scope="session")
async def bus(tools_app: ServiceApp) -> Bus:
    assert tools_app.bus is not None
    return tools_app.bus


@dataclass
class Collected:
    """Every message published under ``tools.{tenant}.>`` since the test began."""

    messages: list[Message] = field(default_factory=list)

    def of(self, cls: type[Any]) -> list[Any]:
        return [m for m in self.messages if isinstance(m, cls)]

    async def wait_for(self, cls: type[Any], count: int = 1, timeout: float = 20) -> list[Any]:
        async def enough() -> list[Any]:
            found = self.of(cls)
            return found if len(found) >= count else []

        return await eventually(enough, timeout=timeout, what=f"{count} {cls.__name__}")


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def collected(bus: Bus, tenant: str) -> AsyncIterator[Collected]:
    found = Collected()

    async def keep(msg: Msg) -> None:
        cls = BY_TYPE.get((msg.headers or {}).get("Message-Type", ""))
        if cls is not None:
            found.messages.append(cls.model_validate_json(msg.data))

    sub = await bus.js.subscribe(f"tools.{tenant}.>", cb=keep, ordered_consumer=True)
    yield found
    await sub.unsubscribe()
