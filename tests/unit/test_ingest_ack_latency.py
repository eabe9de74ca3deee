"""The webhook POST's ack latency histogram: one observation per answered request, labelled by
outcome, none for a client that left before sending its body. No network: the ASGI callable is
driven directly, with a hand-written fake of the webhook service."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.types import Message as AsgiMessage

from taskpilot.ingest.api import WebhookPost
from taskpilot.ingest.service import Accepted, SignatureError
from taskpilot.tenancy import UnknownTenantError

LIMIT = 1024


class FakeWebhooks:
    def __init__(self, error: Exception | None = None):
        self.error = error

    async def accept(self, tenant_id: str, raw_body: bytes, signature: str | None) -> Accepted:
        if self.error is not None:
            raise self.error
        return Accepted(1, 0, 0)


def count(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "taskpilot_ingest_webhook_ack_seconds_count", {"outcome": outcome}
    )
    return value or 0.0


async def post(
    service: Any, tenant_id: str = "acme", body: bytes = b"{}", *, disconnect: bool = False
) -> list[AsgiMessage]:
    sent: list[AsgiMessage] = []
    scope = {"type": "http", "method": "POST", "headers": [(b"x-hub-signature-256", b"sha256=0")]}

    async def receive() -> AsgiMessage:
        if disconnect:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: AsgiMessage) -> None:
        sent.append(message)

    await WebhookPost(service, LIMIT)(tenant_id, scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("service", "tenant_id", "body", "outcome", "status"),
    [
        (FakeWebhooks(), "acme", b"{}", "accepted", 200),
        (FakeWebhooks(SignatureError("wrong")), "acme", b"{}", "bad_signature", 401),
        (FakeWebhooks(UnknownTenantError("nobody")), "nobody", b"{}", "unknown_tenant", 404),
        (FakeWebhooks(), "acme", b"x" * (LIMIT + 1), "too_large", 413),
        (FakeWebhooks(), "not a tenant!", b"{}", "invalid_tenant", 422),
    ],
)
async def test_every_answer_is_timed_under_its_outcome(
    service: FakeWebhooks, tenant_id: str, body: bytes, outcome: str, status: int
) -> None:
    before = count(outcome)
    sent = await post(service, tenant_id, body)
    assert sent[0]["status"] == status
    assert count(outcome) == before + 1


async def test_an_error_is_timed_as_error_and_still_raised() -> None:
    before = count("error")
    with pytest.raises(RuntimeError):
        await post(FakeWebhooks(RuntimeError("bus down")))
    assert count("error") == before + 1


async def test_a_client_gone_before_its_body_is_not_timed() -> None:
    outcomes = ("accepted", "bad_signature", "unknown_tenant", "too_large", "invalid_tenant")
    before = [count(o) for o in (*outcomes, "error")]
    assert await post(FakeWebhooks(), disconnect=True) == []
    assert [count(o) for o in (*outcomes, "error")] == before
