"""Tool calls (owner: tools). Idempotent by ``tool_call_id``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from taskpilot.contracts import subjects
from taskpilot.contracts.envelope import Message


class ToolError(BaseModel):
    """A structured error the model can read and recover from."""

    model_config = ConfigDict(frozen=True)

    code: str
    message: str
    retryable: bool = False


class ExecuteToolCall(Message):
    CHANNEL: ClassVar = subjects.TOOL_EXECUTE

    conversation_id: str
    tool_call_id: str
    tool: str
    arguments: dict[str, Any] = {}


class ToolCallCompleted(Message):
    CHANNEL: ClassVar = subjects.TOOL_COMPLETED

    conversation_id: str
    tool_call_id: str
    tool: str
    result: dict[str, Any] | None = None
    error: ToolError | None = None


class SlotBooked(Message):
    """A calendar slot was booked for a lead (the event exists in the tenant's calendar)."""

    CHANNEL: ClassVar = subjects.TOOL_SLOT_BOOKED

    conversation_id: str
    booking_id: str
    start: datetime
    end: datetime
    timezone: str
    calendar: str = Field(description="The calendar provider: 'caldav' or 'google'")


class BookingCancelled(Message):
    """A booking was cancelled (or replaced by a rescheduled one, ``replaced_by``)."""

    CHANNEL: ClassVar = subjects.TOOL_BOOKING_CANCELLED

    conversation_id: str
    booking_id: str
    replaced_by: str | None = None


class PaymentReceived(Message):
    """The payment provider confirmed a payment for a link the tools service created.

    ``correlation_id`` is the provider's event id (the webhook started this chain).
    """

    CHANNEL: ClassVar = subjects.TOOL_PAYMENT_RECEIVED

    conversation_id: str | None = None
    tool_call_id: str | None = None
    provider: str = "stripe"
    provider_event_id: str
    checkout_session_id: str
    amount_minor: int | None = Field(default=None, description="In the currency's minor unit")
    currency: str | None = None


class DeliverWebhook(Message):
    """Deliver one public event to one of the tenant's outgoing webhook endpoints."""

    CHANNEL: ClassVar = subjects.TOOL_WEBHOOK_DELIVERY

    delivery_id: str = Field(description="Stable per (endpoint, event): receivers dedupe on it")
    endpoint_id: str
    event_type: str
    event: dict[str, Any]


class RunJob(Message):
    """A slow job for one tenant, taken from the TOOL_JOBS work queue by one worker."""

    CHANNEL: ClassVar = subjects.TOOL_JOB_RUN

    job_id: str
    kind: str
    parameters: dict[str, Any] = {}

    def subject_parts(self) -> dict[str, str]:
        return {"kind": self.kind}


class JobProgressed(Message):
    CHANNEL: ClassVar = subjects.TOOL_JOB_PROGRESSED

    job_id: str
    kind: str
    step: str
    done_steps: int
    total_steps: int


class JobCompleted(Message):
    CHANNEL: ClassVar = subjects.TOOL_JOB_COMPLETED

    job_id: str
    kind: str
    result: dict[str, Any] | None = None
    error: ToolError | None = None
