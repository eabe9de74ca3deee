"""Webhooks both ways: Stripe's signed payment events in, tenants' signed event deliveries out
(retried with backoff, dead-lettered, replayable)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from taskpilot.contracts.conversation import ConversationHandedOff
from taskpilot.contracts.tools import PaymentReceived, ToolCallCompleted
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.testing import eventually
from taskpilot.tools.signing import verify
from tests.integration.tools.conftest import Collected
from tests.integration.tools.helpers import WEBHOOK_SECRET, configure, send, tool_call
from tests.integration.tools.standins import Receiver, StripeStandIn

pytestmark = pytest.mark.asyncio(loop_scope="session")

ENDPOINT_SECRET = "endpoint-signing-secret-0123456789"


async def paid_link(
    bus: Bus,
    api: httpx.AsyncClient,
    collected: Collected,
    tenant: str,
    stripe_standin: tuple[StripeStandIn, str],
) -> str:
    """A payment link created through the tool; returns its checkout session id."""
    await configure(api, tenant, stripe_url=stripe_standin[1])
    call = await send(bus, tool_call(tenant, "create_payment_link", {"product": "haircut"}))
    [done] = await collected.wait_for(ToolCallCompleted)
    assert done.error is None and done.result is not None
    [session] = [
        s
        for s in stripe_standin[0].sessions.values()
        if s["metadata"].get("tool_call_id") == call.tool_call_id
    ]
    return str(session["id"])


async def test_a_signed_checkout_completion_becomes_one_payment_event(
    bus: Bus,
    api: httpx.AsyncClient,
    collected: Collected,
    tenant: str,
    stripe_standin: tuple[StripeStandIn, str],
) -> None:
    session_id = await paid_link(bus, api, collected, tenant, stripe_standin)
    body, signature = stripe_standin[0].signed_event(session_id, WEBHOOK_SECRET)

    for _ in range(2):  # Stripe retries; the second delivery must not pay twice
        response = await api.post(
            f"/webhooks/stripe/{tenant}", content=body, headers={"Stripe-Signature": signature}
        )
        assert response.json() == {"outcome": "payment_received"}

    [payment] = await collected.wait_for(PaymentReceived)
    assert payment.checkout_session_id == session_id
    assert (payment.amount_minor, payment.currency) == (2500, "eur")
    assert payment.conversation_id == "conv-1"
    assert payment.provider_event_id == json.loads(body)["id"]


async def test_async_payments_count_only_when_they_succeed(
    bus: Bus,
    api: httpx.AsyncClient,
    collected: Collected,
    tenant: str,
    stripe_standin: tuple[StripeStandIn, str],
) -> None:
    session_id = await paid_link(bus, api, collected, tenant, stripe_standin)
    pending = stripe_standin[0].signed_event(session_id, WEBHOOK_SECRET, payment_status="unpaid")
    succeeded = stripe_standin[0].signed_event(
        session_id, WEBHOOK_SECRET, kind="checkout.session.async_payment_succeeded"
    )

    outcomes = []
    for body, signature in (pending, succeeded):
        response = await api.post(
            f"/webhooks/stripe/{tenant}", content=body, headers={"Stripe-Signature": signature}
        )
        outcomes.append(response.json()["outcome"])

    assert outcomes == ["pending", "payment_received"]
    await collected.wait_for(PaymentReceived)


async def test_forged_or_stale_stripe_signatures_are_refused(
    bus: Bus,
    api: httpx.AsyncClient,
    collected: Collected,
    tenant: str,
    stripe_standin: tuple[StripeStandIn, str],
) -> None:
    session_id = await paid_link(bus, api, collected, tenant, stripe_standin)
    forged = stripe_standin[0].signed_event(session_id, "whsec_someone_else")
    stale = stripe_standin[0].signed_event(
        session_id, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600
    )
    body, good = stripe_standin[0].signed_event(session_id, WEBHOOK_SECRET)
    tampered = (body.replace(b'"paid"', b'"PAID"'), good)

    for content, signature in (forged, stale, tampered, (body, "")):
        response = await api.post(
            f"/webhooks/stripe/{tenant}", content=content, headers={"Stripe-Signature": signature}
        )
        assert response.status_code == 400

    assert collected.of(PaymentReceived) == []


def handed_off(tenant: str) -> ConversationHandedOff:
    return ConversationHandedOff(
        tenant_id=tenant,
        correlation_id="wamid.HBg",
        conversation_id="conv-9",
        lead="34600111222",
        sequence=4,
        reason="asked for a human",
    )


async def subscribe_endpoint(
    api: httpx.AsyncClient, tenant: str, endpoint: str, url: str, events: list[str]
) -> None:
    response = await api.put(
        f"/v1/tenants/{tenant}/webhooks/{endpoint}",
        json={"url": url, "event_types": events, "secret": ENDPOINT_SECRET},
    )
    assert response.status_code == 204, response.text


async def test_signed_delivery_survives_a_receiver_failing_twice(
    bus: Bus, api: httpx.AsyncClient, tenant: str, receiver: tuple[Receiver, str]
) -> None:
    standin, url = receiver
    path = f"crm-{uuid.uuid4().hex[:8]}"
    standin.script[path] = [500, 503]
    await subscribe_endpoint(api, tenant, "crm", f"{url}/{path}", ["ConversationHandedOff"])
    event = handed_off(tenant)

    await bus.publish(event)

    async def delivered() -> list[dict[str, Any]]:
        got = standin.on(path)
        return got if len(got) == 3 else []

    attempts = await eventually(delivered, timeout=20, what="third attempt")
    assert [a["status"] for a in attempts] == [500, 503, 200]
    assert len({a["headers"]["taskpilot-delivery-id"] for a in attempts}) == 1
    headers, body = attempts[-1]["headers"], attempts[-1]["body"]
    verify(headers["taskpilot-signature"], body, ENDPOINT_SECRET, time.time())
    payload = json.loads(body)
    assert payload["type"] == "ConversationHandedOff" and payload["tenant_id"] == tenant
    assert payload["data"]["event_id"] == str(event.event_id)


async def test_an_always_failing_receiver_ends_in_dead_letters_and_can_be_replayed(
    bus: Bus, api: httpx.AsyncClient, tenant: str, receiver: tuple[Receiver, str]
) -> None:
    standin, url = receiver
    path = f"down-{uuid.uuid4().hex[:8]}"
    standin.always[path] = 502
    await subscribe_endpoint(api, tenant, "down", f"{url}/{path}", ["*"])

    await bus.publish(handed_off(tenant))

    async def dead() -> list[dict[str, Any]]:
        letters: list[dict[str, Any]] = (
            await api.get(f"/v1/tenants/{tenant}/webhooks-dead-letters")
        ).json()
        return letters

    [letter] = await eventually(dead, timeout=20, what="a dead letter")
    assert (letter["reason"], letter["attempts"]) == ("max_deliveries", 3)
    assert letter["endpoint_id"] == "down" and letter["event_type"] == "ConversationHandedOff"
    assert len(standin.on(path)) == 3

    other = await api.post(f"/v1/tenants/t-other/webhooks-dead-letters/{letter['seq']}/replay")
    assert other.status_code == 404, "another tenant cannot replay it"

    standin.always[path] = 200  # the receiver is fixed
    replay = await api.post(f"/v1/tenants/{tenant}/webhooks-dead-letters/{letter['seq']}/replay")
    assert replay.status_code == 202
    assert replay.json()["delivery_id"] == letter["delivery_id"]

    async def recovered() -> bool:
        return any(r["status"] == 200 for r in standin.on(path))

    await eventually(recovered, timeout=20, what="the replayed delivery")


async def test_unsubscribed_event_types_are_not_sent(
    bus: Bus, api: httpx.AsyncClient, tenant: str, receiver: tuple[Receiver, str]
) -> None:
    standin, url = receiver
    path = f"pay-{uuid.uuid4().hex[:8]}"
    await subscribe_endpoint(api, tenant, "pay", f"{url}/{path}", ["PaymentReceived"])
    marker = f"mark-{uuid.uuid4().hex[:8]}"
    await subscribe_endpoint(api, tenant, "marker", f"{url}/{marker}", ["ConversationHandedOff"])

    await bus.publish(handed_off(tenant))

    async def marker_seen() -> bool:
        return bool(standin.on(marker))

    await eventually(marker_seen, timeout=20, what="the subscribed endpoint's delivery")
    assert standin.on(path) == []
