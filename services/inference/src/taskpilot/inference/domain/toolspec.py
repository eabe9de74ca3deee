"""Provider-neutral tool schemas (the OpenAI function shape, which LiteLLM maps for every
provider) and the check of a model's tool calls against them. Pure.

The argument models mirror the tools service's contract (``taskpilot.tools.domain.ARGUMENTS``;
a unit test keeps them in step) because services never import each other. Only the tools the
tenant enabled are ever offered; a call to any other tool, or with arguments that do not
validate, is refused here before it reaches the tools service (which refuses it again).
``hand_off`` is inference's own tool: it never leaves this service.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

HAND_OFF = "hand_off"


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckAvailabilityArgs(_Args):
    day: date | None = Field(default=None, description="First local day to look at (today)")
    days: int = Field(default=3, ge=1, le=14, description="How many days to look at")


class BookSlotArgs(_Args):
    start: datetime = Field(description="ISO 8601 start; without an offset, business time")
    name: str | None = Field(default=None, max_length=200, description="The lead's name")
    note: str | None = Field(default=None, max_length=1000)


class CancelBookingArgs(_Args):
    booking_id: str = Field(min_length=1, max_length=64)


class RescheduleBookingArgs(_Args):
    booking_id: str = Field(min_length=1, max_length=64)
    start: datetime = Field(description="ISO 8601 new start")


class PaymentLinkArgs(_Args):
    product: str | None = Field(default=None, max_length=100, description="A known product")
    amount_minor: int | None = Field(
        default=None, gt=0, le=100_000_000, description="Amount in minor units, e.g. cents"
    )
    currency: str | None = Field(default=None, pattern=r"^[a-zA-Z]{3}$")
    description: str | None = Field(default=None, max_length=200)
    quantity: int = Field(default=1, ge=1, le=100)

    @model_validator(mode="after")
    def _one_of(self) -> PaymentLinkArgs:
        if (self.product is None) == (self.amount_minor is None):
            raise ValueError("give either a product or an amount_minor")
        return self


class TriggerWorkflowArgs(_Args):
    workflow: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any] = {}


class HandOffArgs(_Args):
    reason: str = Field(min_length=1, max_length=300, description="Why a person should take over")


TOOLS: dict[str, tuple[type[_Args], str]] = {
    "check_availability": (CheckAvailabilityArgs, "Free appointment slots on the next days."),
    "book_slot": (BookSlotArgs, "Book an appointment slot for the lead (check it is free first)."),
    "cancel_booking": (CancelBookingArgs, "Cancel one of the lead's bookings."),
    "reschedule_booking": (RescheduleBookingArgs, "Move one of the lead's bookings."),
    "create_payment_link": (PaymentLinkArgs, "A payment link for a product or an amount."),
    "trigger_workflow": (TriggerWorkflowArgs, "Start one of the business's named workflows."),
    HAND_OFF: (HandOffArgs, "Hand the conversation to a person of the business."),
}


@functools.cache
def _schema_json(name: str) -> str:
    # Building a JSON schema with pydantic costs ~1.5 ms per tool; they never change.
    return json.dumps(_build_schema(name))


def schema(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(_schema_json(name))
    return result


def _build_schema(name: str) -> dict[str, Any]:
    model, description = TOOLS[name]
    parameters = model.model_json_schema()
    parameters.pop("title", None)
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


def offered(enabled: Iterable[str] | None) -> list[str]:
    """The tools offered to the model: the tenant's enabled ones that exist, and hand_off."""
    known = [t for t in TOOLS if t != HAND_OFF]
    return [t for t in known if t in set(enabled or ())] + [HAND_OFF]


def schemas(names: Iterable[str]) -> list[dict[str, Any]]:
    return [schema(n) for n in names]


@dataclass(frozen=True)
class CheckedCall:
    id: str
    tool: str
    arguments: dict[str, Any]


class InvalidToolCallError(ValueError):
    """The model called a tool it was not offered, or with arguments that do not validate."""


def check_call(
    call_id: str,
    tool: str,
    raw_arguments: str | dict[str, Any] | None,
    offered_tools: Iterable[str],
) -> CheckedCall:
    if tool not in set(offered_tools):
        raise InvalidToolCallError(f"{tool!r} is not a tool this business offers")
    try:
        arguments = (
            json.loads(raw_arguments or "{}")
            if not isinstance(raw_arguments, dict)
            else raw_arguments
        )
        if not isinstance(arguments, dict):
            raise InvalidToolCallError(f"{tool}: arguments are not a JSON object")
        parsed = TOOLS[tool][0].model_validate(arguments)
    except (json.JSONDecodeError, ValidationError) as exc:
        raise InvalidToolCallError(f"{tool}: {exc}") from None
    return CheckedCall(call_id, tool, parsed.model_dump(mode="json", exclude_none=True))
