"""The payments port's contract against its adapter (Stripe, on the stand-in that speaks its
form-encoded API), and the workflow port's against a real HTTP receiver."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest

from taskpilot.tools.adapters import (
    CheckoutRequest,
    HttpWorkflowTrigger,
    Payments,
    ProviderRejectedError,
    ProviderUnavailableError,
    StripePayments,
    WebhookSender,
    WorkflowRequest,
    stripe_client,
)
from tests.integration.tools.standins import Receiver, StripeStandIn

pytestmark = pytest.mark.asyncio(loop_scope="session")


def request(**overrides: object) -> CheckoutRequest:
    values: dict[str, object] = {
        "idempotency_key": f"taskpilot-{uuid.uuid4().hex}",
        "description": "Haircut",
        "amount_minor": 2500,
        "currency": "eur",
        "success_url": "https://example.com/paid",
        "cancel_url": None,
        "metadata": {"tenant_id": "acme", "conversation_id": "c-1", "tool_call_id": "call-1"},
    }
    return CheckoutRequest(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture(params=["stripe"])
def payments(request: pytest.FixtureRequest, stripe_standin: tuple[StripeStandIn, str]) -> Payments:
    standin, url = stripe_standin
    return StripePayments(stripe_client(standin.api_key, url))


async def test_a_checkout_has_a_url_and_the_amount(payments: Payments) -> None:
    link = await payments.create_checkout(request())

    assert link.url.startswith("https://") and link.session_id
    assert (link.amount_minor, link.currency) == (2500, "eur")


async def test_the_same_idempotency_key_gives_the_same_checkout(
    payments: Payments, stripe_standin: tuple[StripeStandIn, str]
) -> None:
    wanted = request()
    before = len(stripe_standin[0].sessions)

    first = await payments.create_checkout(wanted)
    again = await payments.create_checkout(wanted)

    assert again == first
    assert len(stripe_standin[0].sessions) == before + 1


async def test_metadata_reaches_the_provider(
    payments: Payments, stripe_standin: tuple[StripeStandIn, str]
) -> None:
    link = await payments.create_checkout(request())

    session = stripe_standin[0].sessions[link.session_id]
    assert session["metadata"] == {
        "tenant_id": "acme",
        "conversation_id": "c-1",
        "tool_call_id": "call-1",
    }
    assert session["client_reference_id"] == "c-1"


async def test_provider_outage_is_transient(
    payments: Payments, stripe_standin: tuple[StripeStandIn, str]
) -> None:
    stripe_standin[0].fail_next.append(503)

    with pytest.raises(ProviderUnavailableError):
        await payments.create_checkout(request())


async def test_a_refused_request_is_permanent(payments: Payments) -> None:
    with pytest.raises(ProviderRejectedError):
        await payments.create_checkout(request(amount_minor=0))


async def test_bad_credentials_are_permanent(stripe_standin: tuple[StripeStandIn, str]) -> None:
    wrong = StripePayments(stripe_client("sk_test_wrong", stripe_standin[1]))

    with pytest.raises(ProviderRejectedError):
        await wrong.create_checkout(request())


# -- workflow trigger -------------------------------------------------------------------------


@pytest.fixture
async def trigger() -> AsyncIterator[HttpWorkflowTrigger]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield HttpWorkflowTrigger(client, allow_private=True)  # loopback receiver


async def test_header_auth_workflow(
    trigger: HttpWorkflowTrigger, receiver: tuple[Receiver, str]
) -> None:
    path = f"wf-{uuid.uuid4().hex[:8]}"
    answer = await trigger.trigger(
        WorkflowRequest(
            url=f"{receiver[1]}/{path}",
            payload={"lead": "ana"},
            idempotency_key="key-1",
            auth="header",
            header_name="X-N8N-Auth",
            secret="s3cret-value",
        )
    )

    [got] = receiver[0].on(path)
    assert got["headers"]["x-n8n-auth"] == "s3cret-value"
    assert got["headers"]["idempotency-key"] == "key-1"
    assert answer == {"status": 200, "response": {"ok": True, "path": path}}


async def test_jwt_auth_workflow(
    trigger: HttpWorkflowTrigger, receiver: tuple[Receiver, str]
) -> None:
    path = f"wf-{uuid.uuid4().hex[:8]}"
    await trigger.trigger(
        WorkflowRequest(
            url=f"{receiver[1]}/{path}",
            payload={},
            idempotency_key="key-2",
            auth="jwt",
            secret="a-long-shared-jwt-secret-for-hs256",
            subject="acme",
        )
    )

    [got] = receiver[0].on(path)
    token = got["headers"]["authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, "a-long-shared-jwt-secret-for-hs256", algorithms=["HS256"])
    assert (claims["iss"], claims["sub"]) == ("taskpilot", "acme")
    assert claims["exp"] > claims["iat"]


async def test_workflow_errors_are_sorted_into_transient_and_permanent(
    trigger: HttpWorkflowTrigger, receiver: tuple[Receiver, str]
) -> None:
    path = f"wf-{uuid.uuid4().hex[:8]}"
    receiver[0].script[path] = [503, 404]
    wanted = WorkflowRequest(url=f"{receiver[1]}/{path}", payload={}, idempotency_key="k")

    with pytest.raises(ProviderUnavailableError):
        await trigger.trigger(wanted)
    with pytest.raises(ProviderRejectedError):
        await trigger.trigger(wanted)


async def test_private_targets_are_refused_unless_allowed(receiver: tuple[Receiver, str]) -> None:
    path = f"wf-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=5) as client:
        guarded = HttpWorkflowTrigger(client)
        sender = WebhookSender(client)

        with pytest.raises(ProviderRejectedError, match="non-public"):
            await guarded.trigger(
                WorkflowRequest(url=f"{receiver[1]}/{path}", payload={}, idempotency_key="k")
            )
        with pytest.raises(ProviderRejectedError, match="non-public"):
            await sender.send(f"{receiver[1]}/{path}", "secret", "d-1", "SlotBooked", b"{}")

    assert receiver[0].on(path) == []
