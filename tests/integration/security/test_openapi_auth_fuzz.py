"""Schemathesis against the OpenAPI document of every service with tenant routes (conversation,
knowledge, tools, analytics; ingest has only the Meta webhook, fuzzed in
``tests/integration/ingest/test_openapi_fuzz.py``):

* without a credential, or with a forged one, every operation but the public ones answers 401,
  and nothing whatever the request holds is answered 2xx;
* with a valid owner's token (on the fuzzing tenant's own paths) and an operator's token (on
  any tenant), no request is answered with a 5xx.

Bounded (a few dozen requests per service and run) so the module takes a minute or two.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.integration.security.conftest import Guarded

SERVICES = ("conversation", "knowledge", "tools", "analytics")
PUBLIC = r"^/(v1/auth/config|\.well-known/jwks\.json|webhooks/stripe/.*)$"
LONG_POLLS = r"/(stream|sandbox/messages)$"
"""The live stream never ends and the sandbox long-polls: fuzzed with no valid token only."""
CREDENTIAL_HEADERS = ("authorization", "x-api-key")

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def schema_of(guarded: Guarded, service: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{guarded.url(service)}/openapi.json").exclude(
        path_regex=PUBLIC
    )


def cases(schema: schemathesis.BaseSchema, **fixed: Any) -> st.SearchStrategy[schemathesis.Case]:
    return st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE, **fixed),
        schema.as_strategy(GenerationMode.NEGATIVE, **fixed),
    )


def call_as(case: schemathesis.Case, credential: dict[str, str]) -> Any:
    """The case with exactly ``credential`` (schemathesis fills security headers itself)."""
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in CREDENTIAL_HEADERS}
    case.headers = headers
    return case.call(headers=credential, timeout=30)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("credential", ["none", "forged", "revoked-looking key"])
def test_without_a_valid_credential_nothing_but_401(
    guarded: Guarded, service: str, credential: str
) -> None:
    headers = {
        "none": {},
        "forged": {"Authorization": "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln"},
        "revoked-looking key": {"X-API-Key": "tp_shopa.0123456789abcdef." + "A" * 43},
    }[credential]
    schema = schema_of(guarded, service)
    statuses: dict[int, int] = {}

    @FUZZ
    @given(case=cases(schema))
    def call(case: schemathesis.Case) -> None:
        response = call_as(case, headers)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert not 200 <= response.status_code < 300, (case.method, case.path, response.text)
        assert response.status_code < 500, (case.method, case.path, response.text)
        if case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE:
            # Valid requests (by the document) are refused for the credential, not the input.
            assert response.status_code == 401, (case.method, case.path, response.text)

    call()
    assert statuses.get(401), statuses


@pytest.mark.parametrize("service", SERVICES)
def test_with_a_valid_token_no_5xx(guarded: Guarded, service: str) -> None:
    schema = schema_of(guarded, service).exclude(path_regex=LONG_POLLS)
    owner = guarded.bearer("fuzzed")
    operator = guarded.bearer(None, "operator")
    statuses: dict[int, int] = {}

    @FUZZ
    @given(
        case=st.one_of(cases(schema, path_parameters={"tenant_id": "fuzzed"}), cases(schema)),
        operator_call=st.booleans(),
    )
    def call(case: schemathesis.Case, operator_call: bool) -> None:
        response = call_as(case, operator if operator_call else owner)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (case.method, case.path, response.text)
        assert response.status_code != 401, (case.method, case.path, response.text)

    call()
    assert set(statuses) - {403}, statuses  # the token did open the doors
