"""The dashboard signs people in through an OIDC provider (authorization code + PKCE), and the
API accepts the provider's token: a stand-in provider on loopback, analytics with the local
issuer off, Chromium driving the login."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskpilot.runtime.servers import NatsServer, free_port
from tests.e2e.browser.conftest import ROOT, WEB
from tests.e2e.browser.identity_provider import TENANT_CLAIM, identity_provider
from tests.integration.analytics.api_harness import running_analytics, serving, tenant_record

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    # Not the session's server: the durable consumer names are the e2e system's too.
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


async def test_sign_in_through_the_provider(
    own_nats: NatsServer,
    fresh_database_url: str,
    built_dashboard: Path,
    chromium: str,
    tmp_path: Path,
) -> None:
    browser = chromium
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    user = {
        "sub": "auth0|ana",
        "email": "ana@shop.example",
        TENANT_CLAIM: "acme",
        "roles": ["owner"],
    }
    async with (
        serving(identity_provider(issuer, "taskpilot-api", user), port),
        running_analytics(
            own_nats.url,
            fresh_database_url,
            tmp_path / "data",
            [tenant_record("acme", "1")],
            local_issuer=False,
            oidc_issuer=issuer,
            oidc_audience="taskpilot-api",
            oidc_client_id="dashboard-spa",
            tenant_claim=TENANT_CLAIM,
            web_dir=built_dashboard,
        ) as api,
    ):
        out = Path(os.environ.get("TASKPILOT_TEST_OUTPUT", ROOT / "test-output")) / "browser"
        driver = await asyncio.create_subprocess_exec(
            "node",
            "e2e/oidc-login.mjs",
            cwd=WEB,
            env={
                **os.environ,
                "TASKPILOT_URL": api.base_url,
                "EXPECT_TENANT": "acme",
                "OUTPUT_DIR": str(out),
                "CHROMIUM": browser,
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(driver.communicate(), 120)
        finally:
            if driver.returncode is None:
                driver.kill()
    assert driver.returncode == 0, output.decode()
