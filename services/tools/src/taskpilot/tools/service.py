"""Tools use case: execute one tool call, exactly once per tool-call id.

Load (the stored outcome, else the tenant's configuration), decide (domain rules and the
provider), save the outcome with every message it produces, then publish them. A redelivered
call finds its stored outcome and republishes it under the same ids, touching no provider.

Provider failures are translated here, in one place: rejected → a structured error the model
can read; unavailable → retry later, and on the last attempt a retryable structured error
(a calendar that cannot answer is unknown, never free).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from taskpilot.contracts import Message
from taskpilot.contracts.catalogue import BY_TYPE
from taskpilot.contracts.tools import (
    BookingCancelled,
    ExecuteToolCall,
    SlotBooked,
    ToolCallCompleted,
    ToolError,
)
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.consumer import RetryLater, current_attempt
from taskpilot.tools import availability as av
from taskpilot.tools import domain
from taskpilot.tools.adapters import (
    Calendar,
    CalendarEvent,
    CheckoutRequest,
    ProviderError,
    ProviderRejectedError,
    Providers,
    ProviderUnavailableError,
    WorkflowRequest,
)
from taskpilot.tools.repository import Booking, ToolsConfig, ToolsRepository

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class ToolFailedError(Exception):
    """The call ends with a structured error (and maybe a result, e.g. alternatives)."""

    def __init__(self, error: ToolError, result: dict[str, Any] | None = None):
        super().__init__(error.message)
        self.error = error
        self.result = result


Outcome = tuple[dict[str, Any], list[Message]]


class ToolsService:
    def __init__(
        self,
        repo: ToolsRepository,
        providers: Providers,
        bus: Bus,
        *,
        attempts: int = 5,
        retry_delay_s: float = 2.0,
        clock: Clock = utcnow,
    ):
        self._repo = repo
        self._providers = providers
        self._bus = bus
        self._attempts = attempts
        self._retry_delay = retry_delay_s
        self._now = clock
        self._tools: dict[str, Callable[[ExecuteToolCall, Any, ToolsConfig], Awaitable[Outcome]]]
        self._tools = {
            "check_availability": self._check_availability,
            "book_slot": self._book_slot,
            "cancel_booking": self._cancel_booking,
            "reschedule_booking": self._reschedule_booking,
            "create_payment_link": self._create_payment_link,
            "trigger_workflow": self._trigger_workflow,
        }

    # -- the use case ----------------------------------------------------------------------------

    async def execute(self, call: ExecuteToolCall) -> None:
        stored = await self._repo.completed_call(call.tenant_id, call.tool_call_id)
        if stored is None:
            config = await self._repo.load_config(call.tenant_id)
            result, error, facts = await self._decide(call, config)
            completed = call.caused(
                ToolCallCompleted,
                conversation_id=call.conversation_id,
                tool_call_id=call.tool_call_id,
                tool=call.tool,
                result=result,
                error=error,
            ).model_copy(update={"event_id": domain.event_id(call.tenant_id, call.tool_call_id)})
            outbox = {"messages": [m.model_dump(mode="json") for m in (*facts, completed)]}
            stored = await self._repo.complete_call(
                call.tenant_id, call.tool_call_id, call.tool, outbox
            )
        await self._publish_outbox(call, stored)

    async def _publish_outbox(self, call: ExecuteToolCall, stored: dict[str, Any]) -> None:
        for data in stored["messages"]:
            message = BY_TYPE[data["type"]].model_validate(data)
            await self._bus.publish(
                message, msg_id=f"tool:{call.tenant_id}:{call.tool_call_id}:{message.type}"
            )

    async def _decide(
        self, call: ExecuteToolCall, config: ToolsConfig
    ) -> tuple[dict[str, Any] | None, ToolError | None, list[Message]]:
        refused = domain.refusal(
            call.tool, config.enabled, domain.available_tools(config.connected)
        )
        if refused is not None:
            return None, refused, []
        try:
            args = domain.parse_arguments(call.tool, call.arguments)
            result, facts = await self._tools[call.tool](call, args, config)
            return result, None, facts
        except domain.InvalidArgumentsError as exc:
            return None, exc.error, []
        except av.SlotRefused as exc:
            return None, ToolError(code=exc.code, message=str(exc)), []
        except ToolFailedError as exc:
            return exc.result, exc.error, []
        except ProviderRejectedError as exc:
            await self._release(call)
            return None, _provider_error(exc, "rejected", retryable=False), []
        except ProviderUnavailableError as exc:
            if current_attempt() < self._attempts:
                raise RetryLater(self._retry_delay * current_attempt(), str(exc)) from exc
            await self._release(call)
            return None, _provider_error(exc, "unavailable", retryable=True), []

    async def _release(self, call: ExecuteToolCall) -> None:
        """Give up a reservation this call still holds, so the slot is offered again."""
        if call.tool in ("book_slot", "reschedule_booking"):
            held = await self._repo.booking(
                call.tenant_id, domain.booking_id(call.tenant_id, call.tool_call_id)
            )
            if held is not None and held.status == "reserved":
                await self._repo.set_booking_status(call.tenant_id, held.booking_id, "released")

    # -- calendar ----------------------------------------------------------------------------

    def _calendar(self, config: ToolsConfig) -> Calendar:
        connection = config.connections["calendar"]
        return self._providers.calendar(
            connection.provider, connection.settings, connection.secrets
        )

    async def _busy(
        self,
        tenant_id: str,
        calendar: Calendar,
        policy: av.BookingPolicy,
        start: datetime,
        end: datetime,
    ) -> list[av.Interval]:
        """The calendar's busy time plus our own bookings with their buffers (only ours have
        them: another event in the calendar is not an appointment). Raises when unknown."""
        busy = await calendar.busy(start, end)
        held = await self._repo.active_bookings(tenant_id, start, end)
        return sorted([*busy, *(b.interval.widened(*policy.buffers) for b in held)])

    async def _check_availability(
        self, call: ExecuteToolCall, args: domain.CheckAvailabilityArgs, config: ToolsConfig
    ) -> Outcome:
        policy, now = config.policy, self._now()
        first = args.day or now.astimezone(policy.zone).date()
        start, end = av.window_days(policy, datetime.combine(first, datetime.min.time()), args.days)
        busy = await self._busy(call.tenant_id, self._calendar(config), policy, start, end)
        slots = av.free_slots(policy, first, args.days, busy, now)
        return {
            "timezone": policy.timezone,
            "slot_minutes": policy.slot_minutes,
            "slots": [_slot(policy, s) for s in slots[:24]],
            "more": len(slots) > 24,
        }, []

    async def _book_slot(
        self, call: ExecuteToolCall, args: domain.BookSlotArgs, config: ToolsConfig
    ) -> Outcome:
        wanted = av.check_requested_slot(config.policy, args.start, self._now())
        booking, facts = await self._book(call, config, wanted, args.name, args.note, None)
        return _booked(config.policy, booking), facts

    async def _book(
        self,
        call: ExecuteToolCall,
        config: ToolsConfig,
        wanted: av.Interval,
        name: str | None,
        note: str | None,
        replaces: Booking | None,
    ) -> tuple[Booking, list[Message]]:
        policy, calendar = config.policy, self._calendar(config)
        guard = wanted.widened(*policy.buffers)
        booking = Booking(
            booking_id=domain.booking_id(call.tenant_id, call.tool_call_id),
            tool_call_id=call.tool_call_id,
            conversation_id=call.conversation_id,
            start=wanted.start,
            end=wanted.end,
            status="reserved",
            provider=calendar.name,
            replaces=replaces.booking_id if replaces else None,
        )
        held, taken = await self._repo.reserve(
            call.tenant_id, booking, guard, policy.buffers, ignore=booking.replaces
        )
        if taken or held.status == "released":
            raise await self._slot_taken(call, calendar, policy, wanted)
        if held.status == "cancelled":  # booked by this call once, cancelled since
            raise ToolFailedError(
                ToolError(code="booking_cancelled", message="this booking was cancelled")
            )
        if held.status == "reserved" and await calendar.find_event(held.booking_id) is None:
            busy = await calendar.busy(guard.start, guard.end)
            if replaces is not None:  # the booking being moved does not block its new slot
                busy = [b for b in busy if b != replaces.interval]
            if not av.is_free(policy, wanted, busy):
                await self._repo.set_booking_status(call.tenant_id, held.booking_id, "released")
                raise await self._slot_taken(call, calendar, policy, wanted)
            await calendar.create_event(
                CalendarEvent(
                    uid=held.booking_id,
                    start=held.start,
                    end=held.end,
                    summary=f"{policy.event_title}: {name}" if name else policy.event_title,
                    description="\n".join(
                        filter(None, [note, f"Booked by TaskPilot ({call.conversation_id})"])
                    ),
                )
            )
        await self._repo.set_booking_status(call.tenant_id, held.booking_id, "confirmed")
        fact = call.caused(
            SlotBooked,
            conversation_id=call.conversation_id,
            booking_id=held.booking_id,
            start=held.start,
            end=held.end,
            timezone=policy.timezone,
            calendar=calendar.name,
        ).model_copy(
            update={"event_id": domain.event_id(call.tenant_id, held.booking_id, "booked")}
        )
        return held, [fact]

    async def _slot_taken(
        self,
        call: ExecuteToolCall,
        calendar: Calendar,
        policy: av.BookingPolicy,
        wanted: av.Interval,
    ) -> ToolFailedError:
        start, end = av.window_days(policy, wanted.start - timedelta(days=1), 3)
        try:
            busy = await self._busy(call.tenant_id, calendar, policy, start, end)
            options = av.alternatives(policy, wanted, busy, self._now())
        except ProviderError:
            options = []  # unknown calendar: offer nothing rather than guess
        return ToolFailedError(
            ToolError(
                code="slot_taken",
                message="that slot is no longer free"
                + ("; offer one of the alternatives" if options else ""),
                retryable=False,
            ),
            {"alternatives": [_slot(policy, s) for s in options], "timezone": policy.timezone},
        )

    async def _owned_booking(self, call: ExecuteToolCall, booking_id: str) -> Booking:
        booking = await self._repo.booking(call.tenant_id, booking_id)
        if (
            booking is None
            or booking.conversation_id != call.conversation_id
            or booking.status != "confirmed"
        ):
            raise ToolFailedError(
                ToolError(code="unknown_booking", message=f"no active booking {booking_id!r}")
            )
        return booking

    async def _cancel(self, call: ExecuteToolCall, config: ToolsConfig, booking: Booking) -> None:
        await self._calendar(config).delete_event(booking.booking_id)
        await self._repo.set_booking_status(call.tenant_id, booking.booking_id, "cancelled")

    async def _cancel_booking(
        self, call: ExecuteToolCall, args: domain.CancelBookingArgs, config: ToolsConfig
    ) -> Outcome:
        booking = await self._owned_booking(call, args.booking_id)
        await self._cancel(call, config, booking)
        fact = call.caused(
            BookingCancelled, conversation_id=call.conversation_id, booking_id=booking.booking_id
        ).model_copy(
            update={"event_id": domain.event_id(call.tenant_id, booking.booking_id, "cancelled")}
        )
        return {"booking_id": booking.booking_id, "status": "cancelled"}, [fact]

    async def _reschedule_booking(
        self, call: ExecuteToolCall, args: domain.RescheduleBookingArgs, config: ToolsConfig
    ) -> Outcome:
        old = await self._owned_booking(call, args.booking_id)
        wanted = av.check_requested_slot(config.policy, args.start, self._now())
        new, facts = await self._book(call, config, wanted, None, None, old)
        await self._cancel(call, config, old)
        cancelled = call.caused(
            BookingCancelled,
            conversation_id=call.conversation_id,
            booking_id=old.booking_id,
            replaced_by=new.booking_id,
        ).model_copy(
            update={"event_id": domain.event_id(call.tenant_id, old.booking_id, "cancelled")}
        )
        return {**_booked(config.policy, new), "replaces": old.booking_id}, [*facts, cancelled]

    # -- payments and workflows ----------------------------------------------------------------

    async def _create_payment_link(
        self, call: ExecuteToolCall, args: domain.PaymentLinkArgs, config: ToolsConfig
    ) -> Outcome:
        connection = config.connections["payments"]
        settings = domain.StripeSettings.model_validate(connection.settings)
        description, amount, currency = domain.price_for(args, settings)
        link = await self._providers.payments(connection.secrets).create_checkout(
            CheckoutRequest(
                idempotency_key=domain.idempotency_key(call.tenant_id, call.tool_call_id, "pay"),
                description=description,
                amount_minor=amount,
                currency=currency,
                success_url=str(settings.success_url),
                cancel_url=str(settings.cancel_url) if settings.cancel_url else None,
                metadata={
                    "tenant_id": call.tenant_id,
                    "conversation_id": call.conversation_id,
                    "tool_call_id": call.tool_call_id,
                },
            )
        )
        await self._repo.save_payment_link(
            call.tenant_id,
            call.tool_call_id,
            call.conversation_id,
            link.session_id,
            link.url,
            link.amount_minor,
            link.currency,
        )
        return {
            "url": link.url,
            "amount_minor": link.amount_minor,
            "currency": link.currency,
            "description": description,
        }, []

    async def _trigger_workflow(
        self, call: ExecuteToolCall, args: domain.TriggerWorkflowArgs, config: ToolsConfig
    ) -> Outcome:
        connection = config.connections.get(f"workflow:{args.workflow}")
        if connection is None:
            known = sorted(k.split(":", 1)[1] for k in config.connections if ":" in k)
            raise ToolFailedError(
                ToolError(
                    code="unknown_workflow",
                    message=f"no workflow {args.workflow!r}; known: {', '.join(known) or 'none'}",
                )
            )
        settings = domain.WorkflowSettings.model_validate(connection.settings)
        answer = await self._providers.workflows.trigger(
            WorkflowRequest(
                url=str(settings.url),
                payload={
                    "tenant_id": call.tenant_id,
                    "conversation_id": call.conversation_id,
                    "tool_call_id": call.tool_call_id,
                    "workflow": args.workflow,
                    "data": args.payload,
                },
                idempotency_key=domain.idempotency_key(call.tenant_id, call.tool_call_id, "wf"),
                auth=settings.auth,
                header_name=settings.header_name,
                secret=connection.secrets.get("secret"),
                subject=call.tenant_id,
            )
        )
        return answer, []


def _provider_error(exc: ProviderError, what: str, *, retryable: bool) -> ToolError:
    return ToolError(code=f"{exc.provider}_{what}", message=str(exc)[:500], retryable=retryable)


def _slot(policy: av.BookingPolicy, slot: av.Interval) -> dict[str, str]:
    return {
        "start": slot.start.astimezone(policy.zone).isoformat(),
        "end": slot.end.astimezone(policy.zone).isoformat(),
    }


def _booked(policy: av.BookingPolicy, booking: Booking) -> dict[str, Any]:
    return {
        "booking_id": booking.booking_id,
        "status": "booked",
        "timezone": policy.timezone,
        **_slot(policy, booking.interval),
    }
