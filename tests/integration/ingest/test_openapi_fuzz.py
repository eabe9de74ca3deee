"""Schemathesis against ingest's own OpenAPI document: whatever arrives, never a 5xx.

Ingest runs as its own process (``python -m taskpilot.ingest``) on a fresh nats-server and a
scratch database with one tenant. Two runs: every operation with whatever schemathesis makes of
it (unknown tenants, bad signatures, odd query strings), and the webhook POST of the real tenant
with its body signed the way Meta signs it and pointed at the tenant's number, so the fuzzed
webhooks reach the parser and the bus.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from taskpilot.ingest.domain import signature_of
from tests.integration.ingest.tenant import NUMBER, SECRET, TENANT

# Bounded so the module stays under a minute: nested webhook bodies are slow to generate.
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FUZZ_SIGNED = settings(FUZZ, max_examples=60)


@pytest.fixture(scope="module")
def ingest_schema(ingest_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{ingest_url}/openapi.json")


def cases(schema: schemathesis.BaseSchema, **fixed: Any) -> st.SearchStrategy[schemathesis.Case]:
    """Requests that follow the document, and requests that break it on purpose."""
    return st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE, **fixed),
        schema.as_strategy(GenerationMode.NEGATIVE, **fixed),
    )


def test_no_request_is_answered_with_a_5xx(ingest_schema: schemathesis.BaseSchema) -> None:
    @FUZZ
    @given(case=cases(ingest_schema))
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=[not_a_server_error])

    call()


def test_no_signed_webhook_is_answered_with_a_5xx(ingest_schema: schemathesis.BaseSchema) -> None:
    webhook = ingest_schema.include(method="POST", path="/webhooks/whatsapp/{tenant_id}")
    statuses: dict[int, int] = {}

    @FUZZ_SIGNED
    @given(case=cases(webhook, path_parameters={"tenant_id": TENANT}))
    def call(case: schemathesis.Case) -> None:
        raw = signable(case.body)
        response = case.call(
            data=raw,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": signature_of(raw, SECRET),
            },
        )
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, response.text

    call()
    assert statuses.get(200), statuses  # the signed bodies did reach the parser


def signable(body: Any) -> bytes:
    """The generated body as the bytes to sign (any JSON value; none at all is empty)."""
    try:
        return json.dumps(to_our_number(body)).encode()
    except TypeError:  # no body generated
        return b""


def to_our_number(body: Any) -> Any:
    """Point every ``metadata.phone_number_id`` in the body at the tenant's number."""
    if isinstance(body, dict):
        out = {k: to_our_number(v) for k, v in body.items()}
        if isinstance(out.get("metadata"), dict):
            out["metadata"] = {**out["metadata"], "phone_number_id": NUMBER}
        return out
    if isinstance(body, list):
        return [to_our_number(v) for v in body]
    return body
