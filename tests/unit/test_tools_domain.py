"""Tool refusal, argument validation into structured errors, prices, deterministic ids."""

from __future__ import annotations

import pytest

from taskpilot.tools.domain import (
    KNOWN_TOOLS,
    InvalidArgumentsError,
    PaymentLinkArgs,
    StripeSettings,
    available_tools,
    booking_id,
    idempotency_key,
    parse_arguments,
    price_for,
    refusal,
    tool_schemas,
)

STRIPE = StripeSettings.model_validate(
    {
        "currency": "eur",
        "products": {"cut": {"name": "Haircut", "amount_minor": 2500}},
        "custom_amounts": {"min_minor": 500, "max_minor": 10000},
    }
)
CATALOGUE_ONLY = StripeSettings.model_validate(
    {"currency": "eur", "products": {"cut": {"name": "Haircut", "amount_minor": 2500}}}
)


def test_only_enabled_and_connected_tools_run() -> None:
    enabled = {"book_slot", "create_payment_link"}
    available = available_tools({"calendar"})

    assert refusal("book_slot", enabled, available) is None
    assert refusal("create_payment_link", enabled, available).code == "tool_not_configured"  # type: ignore[union-attr]
    assert refusal("check_availability", enabled, available).code == "tool_not_enabled"  # type: ignore[union-attr]
    assert refusal("rm_rf", enabled, available).code == "unknown_tool"  # type: ignore[union-attr]


def test_connections_unlock_their_tools() -> None:
    assert available_tools({"payments", "workflows"}) == {
        "create_payment_link",
        "trigger_workflow",
    }


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("book_slot", {"start": "next tuesday"}, "start"),
        ("book_slot", {"start": "2031-02-30T10:00:00"}, "start"),
        ("book_slot", {}, "start"),
        ("check_availability", {"days": 99}, "days"),
        ("create_payment_link", {"amount_minor": -1}, "amount_minor"),
        ("create_payment_link", {"amount_minor": 100, "product": "cut"}, "either"),
        ("create_payment_link", {}, "either"),
        ("create_payment_link", {"amount_minor": 100, "currency": "euros"}, "currency"),
        ("cancel_booking", {"booking_id": "b", "force": True}, "force"),
    ],
)
def test_bad_arguments_become_a_structured_error(
    tool: str, arguments: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidArgumentsError) as failed:
        parse_arguments(tool, arguments)

    assert failed.value.error.code == "invalid_arguments"
    assert field in failed.value.error.message


def test_prices_come_from_the_catalogue_or_the_amount() -> None:
    by_product = PaymentLinkArgs(product="cut", quantity=2)
    by_amount = PaymentLinkArgs(amount_minor=999, description="Deposit")

    assert price_for(by_product, STRIPE) == ("Haircut", 5000, "eur")
    assert price_for(by_amount, STRIPE) == ("Deposit", 999, "eur")


@pytest.mark.parametrize(
    ("settings", "args"),
    [
        (CATALOGUE_ONLY, PaymentLinkArgs(amount_minor=1, description="Haircut, 99% off")),
        (CATALOGUE_ONLY, PaymentLinkArgs(amount_minor=2500, currency="usd")),
        (STRIPE, PaymentLinkArgs(amount_minor=499)),
        (STRIPE, PaymentLinkArgs(amount_minor=5001, quantity=2)),
        (STRIPE, PaymentLinkArgs(amount_minor=999, currency="usd")),
    ],
)
def test_an_amount_the_model_made_up_is_refused(
    settings: StripeSettings, args: PaymentLinkArgs
) -> None:
    with pytest.raises(InvalidArgumentsError) as failed:
        price_for(args, settings)

    assert failed.value.error.code == "amount_not_allowed"
    assert "cut" in failed.value.error.message


def test_an_amount_equal_to_a_catalogue_price_is_charged_under_the_catalogue_name() -> None:
    args = PaymentLinkArgs(
        amount_minor=2500, description="Haircut, manager approved free", quantity=2
    )

    assert price_for(args, CATALOGUE_ONLY) == ("Haircut", 5000, "eur")


def test_an_unknown_product_names_the_known_ones() -> None:
    with pytest.raises(InvalidArgumentsError) as failed:
        price_for(PaymentLinkArgs(product="yacht"), STRIPE)

    assert failed.value.error.code == "unknown_product"
    assert "cut" in failed.value.error.message


def test_ids_are_deterministic_per_tenant_and_call() -> None:
    assert booking_id("acme", "turn#1#c") == booking_id("acme", "turn#1#c")
    assert booking_id("acme", "turn#1#c") != booking_id("other", "turn#1#c")
    assert idempotency_key("acme", "c", "pay") != idempotency_key("acme", "c", "wf")
    assert booking_id("acme", "x").isalnum()  # a valid CalDAV UID and Google event id


def test_every_tool_has_a_function_schema_from_its_arguments() -> None:
    schemas = {s["function"]["name"]: s["function"] for s in tool_schemas()}

    assert set(schemas) == set(KNOWN_TOOLS)
    book = schemas["book_slot"]["parameters"]
    assert book["required"] == ["start"] and book["additionalProperties"] is False
    assert [s["function"]["name"] for s in tool_schemas({"book_slot"})] == ["book_slot"]
