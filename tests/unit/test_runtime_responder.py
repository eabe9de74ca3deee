"""The runtime's request-reply responder: every failure travels back in the answer."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from taskpilot.contracts.inference import ReplyWhatIf, WhatIfAnswer
from taskpilot.runtime.consumer import responder
from taskpilot.tenancy import UnknownTenantError
from taskpilot.tenancy.context import current_tenant


def request(tenant: str = "t-aurora", **overrides: Any) -> bytes:
    body = ReplyWhatIf(
        tenant_id=tenant,
        correlation_id="c",
        conversation_id="conv-1",
        lead="34600000001",
        turn_id="wamid.1",
        text="hi",
    ).model_dump(mode="json")
    return json.dumps({**body, **overrides}).encode()


def message(body: bytes, subject_tenant: str = "t-aurora") -> Any:
    raw = SimpleNamespace(subject=f"rpc.inference.{subject_tenant}.what_if")
    return SimpleNamespace(body=body, raw_message=raw, headers={})


async def answered(req: ReplyWhatIf) -> WhatIfAnswer:
    return WhatIfAnswer(text=f"answered in {current_tenant()}")


async def unknown(req: ReplyWhatIf) -> WhatIfAnswer:
    raise UnknownTenantError(req.tenant_id)


def error(reason: str) -> WhatIfAnswer:
    return WhatIfAnswer(error=reason)


async def reply(handler: Any, body: bytes, subject_tenant: str = "t-aurora") -> WhatIfAnswer:
    raw = await handler(body, message(body, subject_tenant))
    return WhatIfAnswer.model_validate_json(raw)


async def test_a_good_request_is_answered_in_its_tenants_scope() -> None:
    handler = responder(ReplyWhatIf, error, answered, service="test")
    assert (await reply(handler, request())).text == "answered in t-aurora"


async def test_an_invalid_request_is_answered_with_the_reason() -> None:
    handler = responder(ReplyWhatIf, error, answered, service="test")
    answer = await reply(handler, b'{"tenant_id": "t-aurora"}')
    assert answer.error is not None and answer.error.startswith("invalid request:")


async def test_a_body_naming_another_tenant_than_the_subject_is_refused() -> None:
    handler = responder(ReplyWhatIf, error, answered, service="test")
    answer = await reply(handler, request("t-rayo"), subject_tenant="t-aurora")
    assert answer.error == "tenant in subject and body differ"


async def test_a_listed_exception_becomes_its_refusal_and_others_still_raise() -> None:
    refusing = responder(
        ReplyWhatIf,
        error,
        unknown,
        service="test",
        refusals={UnknownTenantError: lambda exc: "no such tenant"},
    )
    assert (await reply(refusing, request())).error == "no such tenant"

    raising = responder(ReplyWhatIf, error, unknown, service="test")
    with pytest.raises(UnknownTenantError):  # not a refusal: never swallowed
        await reply(raising, request())
