"""Which tool calls may run, what their arguments mean, and the ids that make them
idempotent. No I/O, no client libraries.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator

from taskpilot.contracts.tools import ToolError

NAMESPACE = uuid.UUID("3d0f6c8e-8f7b-4d51-9a0e-7c2f4b6a1e93")

CALENDAR_TOOLS = ("check_availability", "book_slot", "cancel_booking", "reschedule_booking")
KNOWN_TOOLS = (*CALENDAR_TOOLS, "create_payment_link", "trigger_workflow")
NEEDS = {
    **dict.fromkeys(CALENDAR_TOOLS, "calendar"),
    "create_payment_link": "payments",
    "trigger_workflow": "workflows",
}
"""The connection each tool needs before it can run."""


def refusal(tool: str, enabled: set[str], available: set[str]) -> ToolError | None:
    """Why this call cannot run, or None when it can. Whatever a lead writes, a tool the
    tenant has not enabled never runs."""
    if tool not in KNOWN_TOOLS:
        return ToolError(code="unknown_tool", message=f"no tool named {tool!r}")
    if tool not in enabled:
        return ToolError(
            code="tool_not_enabled", message=f"{tool} is not enabled for this business"
        )
    if tool not in available:
        return ToolError(code="tool_not_configured", message=f"{tool} has no connected provider")
    return None


def available_tools(connections: set[str]) -> set[str]:
    """Tools whose provider connection exists (``calendar``, ``payments``, ``workflows``)."""
    return {tool for tool, needs in NEEDS.items() if needs in connections}


def stable_id(*parts: str) -> str:
    """A short deterministic id (hex, so valid as a CalDAV UID and a Google event id)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def event_id(*parts: str) -> uuid.UUID:
    """Deterministic envelope ids: a republished fact keeps its id, so readers dedupe it."""
    return uuid.uuid5(NAMESPACE, "\x1f".join(parts))


def booking_id(tenant_id: str, tool_call_id: str) -> str:
    return "tp" + stable_id(tenant_id, "booking", tool_call_id)


def idempotency_key(tenant_id: str, tool_call_id: str, operation: str) -> str:
    return f"taskpilot-{stable_id(tenant_id, operation, tool_call_id)}"


# -- tool arguments (what the model sends) ---------------------------------------------------


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckAvailabilityArgs(_Args):
    day: date | None = Field(default=None, description="First local day to look at (today)")
    days: int = Field(default=3, ge=1, le=14)


class BookSlotArgs(_Args):
    start: datetime = Field(description="ISO 8601; without an offset it is the business's time")
    name: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=1000)


class CancelBookingArgs(_Args):
    booking_id: str = Field(min_length=1, max_length=64)


class RescheduleBookingArgs(_Args):
    booking_id: str = Field(min_length=1, max_length=64)
    start: datetime


class PaymentLinkArgs(_Args):
    product: str | None = Field(default=None, max_length=100)
    amount_minor: int | None = Field(
        default=None, gt=0, le=100_000_000, description="Minor unit, e.g. cents"
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


ARGUMENTS: dict[str, type[_Args]] = {
    "check_availability": CheckAvailabilityArgs,
    "book_slot": BookSlotArgs,
    "cancel_booking": CancelBookingArgs,
    "reschedule_booking": RescheduleBookingArgs,
    "create_payment_link": PaymentLinkArgs,
    "trigger_workflow": TriggerWorkflowArgs,
}


DESCRIPTIONS = {
    "check_availability": "Free appointment slots in the business's calendar, by local day.",
    "book_slot": "Book one slot (a start from check_availability) for this lead.",
    "cancel_booking": "Cancel a booking this lead made.",
    "reschedule_booking": "Move a booking this lead made to another free slot.",
    "create_payment_link": "A payment link for a catalogue product or an amount.",
    "trigger_workflow": "Start one of the business's automation workflows by name.",
}


def tool_schemas(tools: set[str] | None = None) -> list[dict[str, Any]]:
    """Function-calling schemas (OpenAI shape) of the tools, for the model's prompt."""
    return [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": DESCRIPTIONS[name],
                "parameters": model.model_json_schema(),
            },
        }
        for name, model in ARGUMENTS.items()
        if tools is None or name in tools
    ]


class InvalidArgumentsError(Exception):
    def __init__(self, error: ToolError):
        super().__init__(error.message)
        self.error = error


def parse_arguments(tool: str, arguments: dict[str, Any]) -> _Args:
    """The typed arguments, or InvalidArgumentsError with what the model should fix."""
    try:
        return ARGUMENTS[tool].model_validate(arguments)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidArgumentsError(
            ToolError(code="invalid_arguments", message=problems[:1000])
        ) from None


# -- tenant configuration ---------------------------------------------------------------------


class Product(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    amount_minor: int = Field(gt=0, le=100_000_000)
    currency: str = Field(default="eur", pattern=r"^[a-z]{3}$")


class CalDavSettings(BaseModel):
    provider: Literal["caldav"] = "caldav"
    url: HttpUrl
    calendar_url: HttpUrl = Field(description="The collection bookings go to")
    username: str | None = None


class CalDavSecrets(BaseModel):
    password: str | None = None


class GoogleSettings(BaseModel):
    provider: Literal["google"] = "google"
    calendar_id: str = "primary"
    client_id: str


class GoogleSecrets(BaseModel):
    client_secret: str
    refresh_token: str


class AmountRange(BaseModel):
    """Amounts (in the connection's currency) the assistant may charge that are not a catalogue
    price, e.g. deposits or quotes. Inside this range the model's amount is trusted: a tenant
    who sets it accepts that a fooled model may charge any amount in it."""

    min_minor: int = Field(gt=0, le=100_000_000)
    max_minor: int = Field(gt=0, le=100_000_000)

    @model_validator(mode="after")
    def _ordered(self) -> AmountRange:
        if self.min_minor > self.max_minor:
            raise ValueError("min_minor is above max_minor")
        return self


class StripeSettings(BaseModel):
    provider: Literal["stripe"] = "stripe"
    currency: str = Field(default="eur", pattern=r"^[a-z]{3}$")
    products: dict[str, Product] = {}
    custom_amounts: AmountRange | None = Field(
        default=None,
        description="Amounts that are not a catalogue price the assistant may charge; "
        "None: only catalogue prices",
    )
    success_url: HttpUrl = HttpUrl("https://example.com/paid")
    cancel_url: HttpUrl | None = None


class StripeSecrets(BaseModel):
    api_key: str = Field(min_length=1)
    webhook_secret: str = Field(min_length=1)


class WorkflowSettings(BaseModel):
    provider: Literal["webhook"] = "webhook"
    url: HttpUrl
    auth: Literal["none", "header", "jwt"] = "header"
    header_name: str = "X-TaskPilot-Auth"


class WorkflowSecrets(BaseModel):
    secret: str | None = None


CONNECTION_MODELS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "caldav": (CalDavSettings, CalDavSecrets),
    "google": (GoogleSettings, GoogleSecrets),
    "stripe": (StripeSettings, StripeSecrets),
    "webhook": (WorkflowSettings, WorkflowSecrets),
}
KIND_OF = {"caldav": "calendar", "google": "calendar", "stripe": "payments", "webhook": "workflows"}


def price_for(args: PaymentLinkArgs, settings: StripeSettings) -> tuple[str, int, str]:
    """(description, amount in minor units, currency) of a payment link request."""
    if args.product is not None:
        product = settings.products.get(args.product)
        if product is None:
            known = ", ".join(sorted(settings.products)) or "none"
            raise InvalidArgumentsError(
                ToolError(
                    code="unknown_product",
                    message=f"no product {args.product!r}; known products: {known}",
                )
            )
        return product.name, product.amount_minor * args.quantity, product.currency
    assert args.amount_minor is not None
    currency = (args.currency or settings.currency).lower()
    for product in settings.products.values():  # a catalogue price, named as the catalogue does
        if (product.amount_minor, product.currency) == (args.amount_minor, currency):
            return product.name, args.amount_minor * args.quantity, currency
    total, allowed = args.amount_minor * args.quantity, settings.custom_amounts
    if allowed is None or currency != settings.currency:
        raise _amount_refused("is not a catalogue price", settings)
    if not allowed.min_minor <= total <= allowed.max_minor:
        raise _amount_refused("is outside the business's range for custom amounts", settings)
    return args.description or "Payment", total, currency


def _amount_refused(why: str, settings: StripeSettings) -> InvalidArgumentsError:
    """The amount came from the model, which a lead or a document may have talked into any
    price: only the tenant's catalogue and its custom-amount range are trusted."""
    known = ", ".join(sorted(settings.products)) or "none"
    return InvalidArgumentsError(
        ToolError(
            code="amount_not_allowed",
            message=f"that amount {why}; use a product instead (known products: {known})",
        )
    )
