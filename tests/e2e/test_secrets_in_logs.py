"""Secrets are never logged: exercise every path that handles one, then grep every log."""

from __future__ import annotations

import uuid

import httpx
import pytest

from taskpilot.cli import demo
from taskpilot.ingest.meta import signed, text_webhook
from taskpilot.runtime.testing import eventually
from tests.e2e.conftest import System

pytestmark = pytest.mark.asyncio(loop_scope="session")
SECRETS = (demo.DEMO_APP_SECRET, demo.DEMO_ACCESS_TOKEN, demo.DEMO_VERIFY_TOKEN)


async def test_no_secret_appears_in_any_service_log(system: System) -> None:
    lead = "4917" + str(uuid.uuid4().int)[:8]
    hook = f"{system.url('ingest')}/webhooks/whatsapp/{demo.DEMO_TENANT}"
    async with httpx.AsyncClient(timeout=10) as client:
        # the verify token (handshake), the app secret (signature), the access token (send)
        await client.get(
            hook,
            params={
                "hub.mode": "subscribe",
                "hub.challenge": "1",
                "hub.verify_token": demo.DEMO_VERIFY_TOKEN,
            },
        )
        await client.get(
            hook,
            params={
                "hub.mode": "subscribe",
                "hub.challenge": "1",
                "hub.verify_token": "wrong-" + demo.DEMO_VERIFY_TOKEN,
            },
        )
        body, headers = signed(text_webhook(demo.DEMO_NUMBER, lead, "hola"), demo.DEMO_APP_SECRET)
        await client.post(hook, content=body, headers=headers)
        await client.post(
            hook, content=body, headers={**headers, "X-Hub-Signature-256": "sha256=0"}
        )

        async def sent() -> bool:
            r = await client.get(f"{system.url('sandbox')}/_sandbox/messages", params={"to": lead})
            return bool(r.json())

        await eventually(sent, timeout=30, what="reply sent")
    logs = sorted(system.log_dir.glob("*.log"))
    assert logs
    for log in logs:
        text = log.read_text(errors="replace")
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} found in {log.name}"
