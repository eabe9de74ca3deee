"""The thin slice end to end: every service a separate process, real NATS and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from taskpilot.analytics.auth import LocalIssuer
from taskpilot.cli import demo
from taskpilot.contracts import subjects
from taskpilot.conversation.domain import conversation_id
from taskpilot.ingest.meta import message_value, signed, text_webhook, webhook
from taskpilot.runtime.testing import eventually
from tests.e2e.conftest import System

pytestmark = pytest.mark.asyncio(loop_scope="session")


def new_lead() -> str:
    return "4915" + str(uuid.uuid4().int)[:9]


async def post_webhook(
    client: httpx.AsyncClient,
    system: System,
    payload: dict[str, Any] | bytes,
    secret: str = demo.DEMO_APP_SECRET,
) -> httpx.Response:
    body, headers = signed(payload, secret)
    return await client.post(
        f"{system.url('ingest')}/webhooks/whatsapp/{demo.DEMO_TENANT}",
        content=body,
        headers=headers,
    )


async def sends_to(client: httpx.AsyncClient, system: System, lead: str) -> list[dict[str, Any]]:
    response = await client.get(f"{system.url('sandbox')}/_sandbox/messages", params={"to": lead})
    return list(response.json())


def analytics_auth(system: System) -> dict[str, str]:
    """A dashboard token of the demo tenant, from the analytics process's local issuer."""
    issuer = LocalIssuer.in_data_dir(Path(system.processes["analytics"].env["TASKPILOT_DATA_DIR"]))
    token = issuer.issue(tenant_id=demo.DEMO_TENANT, roles=["owner"], subject="e2e")
    return {"Authorization": f"Bearer {token}"}


async def conversation_of(
    client: httpx.AsyncClient, system: System, lead: str
) -> dict[str, Any] | None:
    conv = conversation_id(demo.DEMO_TENANT, lead)
    response = await client.get(
        f"{system.url('analytics')}/v1/tenants/{demo.DEMO_TENANT}/conversations/{conv}",
        headers=analytics_auth(system),
    )
    return response.json() if response.status_code == 200 else None


async def stream_messages(system: System, stream: str) -> int:
    nc = await nats.connect(system.nats_url)
    try:
        return int((await nc.jetstream().stream_info(stream)).state.messages)
    finally:
        await nc.close()


async def test_faq_question_is_answered_once_and_shown_on_the_dashboard(system: System) -> None:
    lead, wamid = new_lead(), "wamid.e2e-" + uuid.uuid4().hex
    payload = text_webhook(demo.DEMO_NUMBER, lead, "What time do you open?", wamid, name="Ana")
    async with httpx.AsyncClient(timeout=10) as client:
        first = await post_webhook(client, system, payload)
        assert first.status_code == 200
        assert first.json() == {"published": 1, "duplicates": 0, "dead_lettered": 0}

        sent = await eventually(
            lambda: sends_to(client, system, lead), timeout=20, what="reply sent"
        )
        assert len(sent) == 1
        assert sent[0]["phone_number_id"] == demo.DEMO_NUMBER
        assert sent[0]["text"] == demo.DEMO_FAQS[0][1]

        async def both_messages_projected() -> dict[str, Any] | None:
            conv = await conversation_of(client, system, lead)
            if conv and [m["status"] for m in conv["messages"]] == ["received", "sent"]:
                return conv
            return None

        conv = await eventually(both_messages_projected, timeout=20, what="read model")
        incoming, reply = conv["messages"]
        assert conv["lead"] == lead and conv["lead_name"] == "Ana" and conv["status"] == "bot"
        assert incoming["direction"] == "in" and incoming["text"] == "What time do you open?"
        assert reply["direction"] == "out" and reply["text"] == demo.DEMO_FAQS[0][1]
        assert (reply["tier"], reply["source"]) == ("L1", "faq")
        assert reply["citations"][0]["title"] == demo.DEMO_FAQS[0][0]
        assert reply["wamid"] == sent[0]["wamid"]

        # Meta redelivers the same webhook: stored once, answered once.
        again = await post_webhook(client, system, payload)
        assert again.json() == {"published": 0, "duplicates": 1, "dead_lettered": 0}
        # A later message of the same lead is processed after the duplicate (same partition,
        # in order), so once it is answered the duplicate has surely been handled.
        await post_webhook(client, system, text_webhook(demo.DEMO_NUMBER, lead, "hola"))
        sent = await eventually(
            lambda: _at_least(sends_to(client, system, lead), 2), timeout=20, what="second reply"
        )
        assert [m["text"] for m in sent] == [
            demo.DEMO_FAQS[0][1],
            "Hi! 👋 Thanks for writing to Salón Aurora. How can we help you today?",
        ]


async def _at_least(call: Any, n: int) -> list[dict[str, Any]] | None:
    result = await call
    return result if len(result) >= n else None


async def test_unanswerable_question_gets_holding_reply_and_handoff(system: System) -> None:
    lead = new_lead()
    async with httpx.AsyncClient(timeout=10) as client:
        text = "Can you do a group discount for my wedding party of twelve?"
        await post_webhook(client, system, text_webhook(demo.DEMO_NUMBER, lead, text))
        sent = await eventually(lambda: sends_to(client, system, lead), timeout=20, what="reply")
        assert "get back to you" in sent[0]["text"]

        async def handed_off() -> bool:
            conv = await conversation_of(client, system, lead)
            return bool(conv and conv["status"] == "human")

        await eventually(handed_off, timeout=20, what="conversation handed to a human")


async def test_wrong_signature_is_refused_and_nothing_published(system: System) -> None:
    before = await stream_messages(system, subjects.WHATSAPP_IN.name)
    payload = text_webhook(demo.DEMO_NUMBER, new_lead(), "hi")
    async with httpx.AsyncClient(timeout=10) as client:
        wrong = await post_webhook(client, system, payload, secret="not-the-app-secret")
        assert wrong.status_code == 401
        body, headers = signed(payload, demo.DEMO_APP_SECRET)
        del headers["X-Hub-Signature-256"]
        missing = await client.post(
            f"{system.url('ingest')}/webhooks/whatsapp/{demo.DEMO_TENANT}",
            content=body,
            headers=headers,
        )
        assert missing.status_code == 401
    assert await stream_messages(system, subjects.WHATSAPP_IN.name) == before


async def test_malformed_and_unroutable_webhooks_are_dead_lettered_and_visible(
    system: System,
) -> None:
    marker = uuid.uuid4().hex
    malformed = b'{"object": "whatsapp_business_account", "entry": [ ' + marker.encode()
    unknown_number = webhook(
        message_value(
            "999000999000",
            [
                {
                    "from": "1555",
                    "id": f"wamid.{marker}",
                    "type": "text",
                    "text": {"body": "hi"},
                    "timestamp": "1",
                }
            ],
        )
    )
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await post_webhook(client, system, malformed)).status_code == 200
        response = await post_webhook(client, system, unknown_number)
        assert response.status_code == 200 and response.json()["dead_lettered"] == 1

        async def letters() -> dict[str, dict[str, Any]] | None:
            response = await client.get(
                f"{system.url('analytics')}/v1/tenants/{demo.DEMO_TENANT}/dead-letters",
                headers=analytics_auth(system),
            )
            mine = {d["reason"]: d for d in response.json() if marker in d["payload"]}
            return mine if len(mine) == 2 else None

        found = await eventually(letters, timeout=20, what="dead letters on the dashboard")
    assert "Expecting value" in found["malformed_webhook"]["error"] or found["malformed_webhook"]
    assert "999000999000" in found["unknown_phone_number"]["error"]


async def test_verification_handshake(system: System) -> None:
    url = f"{system.url('ingest')}/webhooks/whatsapp/{demo.DEMO_TENANT}"
    async with httpx.AsyncClient(timeout=10) as client:
        ok = await client.get(
            url,
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": demo.DEMO_VERIFY_TOKEN,
                "hub.challenge": "1158201444",
            },
        )
        assert (ok.status_code, ok.text) == (200, "1158201444")
        bad = await client.get(
            url,
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": "guess",
                "hub.challenge": "1",
            },
        )
        assert bad.status_code == 403
        unknown = await client.post(
            f"{system.url('ingest')}/webhooks/whatsapp/nobody",
            content=b"{}",
            headers={"X-Hub-Signature-256": "sha256=00"},
        )
        assert unknown.status_code == 404


async def test_a_webhook_delivered_three_times_is_answered_once(system: System) -> None:
    """Immediately (JetStream's duplicate window drops it), after the window (stored again:
    the conversation's own record of wamids drops it), and much later (the same)."""
    lead, wamid = new_lead(), "wamid.thrice-" + uuid.uuid4().hex
    payload = text_webhook(demo.DEMO_NUMBER, lead, "hola", wamid)
    async with httpx.AsyncClient(timeout=10) as client:
        await post_webhook(client, system, payload)
        again = await post_webhook(client, system, payload)
        assert again.json()["duplicates"] == 1
        await eventually(lambda: sends_to(client, system, lead), timeout=20, what="first reply")

        # What ingest published, re-stored under fresh ids: as JetStream would after its window.
        nc = await nats.connect(system.nats_url)
        try:
            js = nc.jetstream()
            partitioning = subjects.WHATSAPP_IN.partitioning
            assert partitioning is not None
            stored = await js.subscribe(
                f"{partitioning.stored_prefix}.*.{demo.DEMO_TENANT}.{lead}.message",
                stream=subjects.WHATSAPP_IN.name,
                ordered_consumer=True,
            )
            original = await stored.next_msg(timeout=5)
            await stored.unsubscribe()
            subject = subjects.WA_MESSAGE_RECEIVED.subject(tenant=demo.DEMO_TENANT, lead=lead)
            for late in ("after-the-window", "much-later"):
                headers = {**(original.headers or {}), "Nats-Msg-Id": f"{wamid}:{late}"}
                await js.publish(subject, original.data, headers=headers)
        finally:
            await nc.close()
        # A later message of the same lead comes after both redeliveries in its partition.
        await post_webhook(client, system, text_webhook(demo.DEMO_NUMBER, lead, "thanks!"))
        sent = await eventually(
            lambda: _at_least(sends_to(client, system, lead), 2), timeout=20, what="second reply"
        )
    assert len(sent) == 2  # one answer to the thrice-delivered "hola", one to "thanks!"
    assert "Thanks for writing" in sent[0]["text"]
