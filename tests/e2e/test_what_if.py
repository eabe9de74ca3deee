"""What-if replay against the whole system: a past turn through today's real inference (the
embedded cascade), then and now side by side, and nothing sent to the lead."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from taskpilot.cli import demo
from taskpilot.conversation.domain import conversation_id
from taskpilot.ingest.meta import text_webhook
from taskpilot.runtime.testing import eventually
from taskpilot.runtime.testing.tokens import bearer
from taskpilot.tenancy.tokens import LocalIssuer
from tests.e2e.conftest import System
from tests.e2e.test_thin_slice import new_lead, post_webhook, sends_to

pytestmark = pytest.mark.asyncio(loop_scope="session")


def owner(system: System) -> dict[str, str]:
    """An owner of the demo tenant, signed by analytics' local issuer (the system's)."""
    data = Path(system.processes["analytics"].env["TASKPILOT_DATA_DIR"])
    return bearer(LocalIssuer.in_data_dir(data), demo.DEMO_TENANT)


async def test_a_past_turn_replayed_through_todays_inference_sends_nothing(system: System) -> None:
    lead = new_lead()
    question = "What time do you open?"
    conv = conversation_id(demo.DEMO_TENANT, lead)
    what_if = f"{system.url('conversation')}/v1/tenants/{demo.DEMO_TENANT}/conversations/{conv}"
    async with httpx.AsyncClient(timeout=30) as client:
        payload = text_webhook(demo.DEMO_NUMBER, lead, question, f"wamid.e2e-{uuid.uuid4()}")
        assert (await post_webhook(client, system, payload)).status_code == 200
        [sent] = await eventually(
            lambda: sends_to(client, system, lead), timeout=20, what="reply sent"
        )

        response = await client.post(f"{what_if}/what-if", headers=owner(system))

        assert response.status_code == 200, response.text
        [turn] = response.json()
        assert (turn["inbound"], turn["then_reply"]) == (question, sent["text"])
        # Same knowledge, same settings: today's embedded cascade answers the same.
        assert (turn["now_reply"], turn["now_tier"], turn["changed"]) == (sent["text"], "L1", False)
        assert turn["error"] is None
        assert len(await sends_to(client, system, lead)) == 1
        refused = await client.post(f"{what_if}/what-if")
        assert refused.status_code == 401
