"""The tool-call use case with hand-written fakes: no network, no database, a fixed clock."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from taskpilot.contracts import Message
from taskpilot.contracts.tools import ExecuteToolCall, SlotBooked, ToolCallCompleted
from taskpilot.runtime.consumer import RetryLater
from taskpilot.tools.adapters import CalendarEvent, ProviderUnavailableError
from taskpilot.tools.availability import BookingPolicy, Interval
from taskpilot.tools.repository import ACTIVE, Booking, Connection, ToolsConfig
from taskpilot.tools.service import ToolsService

MADRID = ZoneInfo("Europe/Madrid")
NOW = datetime(2031, 3, 1, 12, tzinfo=UTC)  # a Saturday
MONDAY_10 = datetime(2031, 3, 3, 10, tzinfo=MADRID)


@dataclass
class FakeCalendar:
    name: str = "fake"
    events: dict[str, CalendarEvent] = field(default_factory=dict)
    down: bool = False
    creates: int = 0

    async def busy(self, start: datetime, end: datetime) -> list[Interval]:
        if self.down:
            raise ProviderUnavailableError(self.name, "timed out")
        spans = [Interval(e.start, e.end) for e in self.events.values()]
        return sorted(s for s in spans if s.overlaps(Interval(start, end)))

    async def create_event(self, event: CalendarEvent) -> None:
        self.creates += 1
        self.events.setdefault(event.uid, event)

    async def find_event(self, uid: str) -> CalendarEvent | None:
        return self.events.get(uid)

    async def delete_event(self, uid: str) -> bool:
        return self.events.pop(uid, None) is not None


@dataclass
class FakeProviders:
    calendar_: FakeCalendar

    def calendar(self, provider: str, settings: Any, secrets: Any) -> FakeCalendar:
        return self.calendar_


@dataclass
class FakeRepository:
    config: ToolsConfig
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    bookings: dict[str, Booking] = field(default_factory=dict)

    async def completed_call(self, tenant_id: str, tool_call_id: str) -> dict[str, Any] | None:
        return self.calls.get(tool_call_id)

    async def complete_call(
        self, tenant_id: str, tool_call_id: str, tool: str, completed: dict[str, Any]
    ) -> dict[str, Any]:
        return self.calls.setdefault(tool_call_id, completed)

    async def load_config(self, tenant_id: str) -> ToolsConfig:
        return self.config

    async def reserve(
        self,
        tenant_id: str,
        booking: Booking,
        guard: Interval,
        buffers: tuple[timedelta, timedelta],
        ignore: str | None = None,
    ) -> tuple[Booking, list[Interval]]:
        if booking.booking_id in self.bookings:
            return self.bookings[booking.booking_id], []
        taken = [
            b.interval
            for b in self.bookings.values()
            if b.status in ACTIVE
            and b.booking_id != ignore
            and b.interval.widened(*buffers).overlaps(guard)
        ]
        if not taken:
            self.bookings[booking.booking_id] = booking
        return booking, taken

    async def booking(self, tenant_id: str, booking_id: str) -> Booking | None:
        return self.bookings.get(booking_id)

    async def set_booking_status(self, tenant_id: str, booking_id: str, status: str) -> None:
        self.bookings[booking_id] = replace(self.bookings[booking_id], status=status)

    async def active_bookings(
        self, tenant_id: str, start: datetime, end: datetime
    ) -> list[Booking]:
        window = Interval(start, end)
        return [
            b for b in self.bookings.values() if b.status in ACTIVE and b.interval.overlaps(window)
        ]


@dataclass
class FakeBus:
    published: list[tuple[Message, str | None]] = field(default_factory=list)

    async def publish(self, message: Message, *, msg_id: str | None = None) -> bool:
        self.published.append((message, msg_id))
        return True

    def completions(self) -> list[ToolCallCompleted]:
        return [m for m, _ in self.published if isinstance(m, ToolCallCompleted)]


POLICY = BookingPolicy.model_validate(
    {
        "timezone": "Europe/Madrid",
        "opening_hours": {"mon": [("09:00", "17:00")]},
        "buffer_after_minutes": 15,
    }
)


@dataclass
class World:
    calendar: FakeCalendar
    repo: FakeRepository
    bus: FakeBus

    def service(self, attempts: int = 3) -> ToolsService:
        return ToolsService(
            self.repo,  # type: ignore[arg-type]
            FakeProviders(self.calendar),  # type: ignore[arg-type]
            self.bus,  # type: ignore[arg-type]
            attempts=attempts,
            clock=lambda: NOW,
        )


@pytest.fixture
def world() -> World:
    config = ToolsConfig(
        enabled={"book_slot", "check_availability", "reschedule_booking", "cancel_booking"},
        policy=POLICY,
        connections={"calendar": Connection("calendar", "fake", {}, {})},
    )
    return World(FakeCalendar(), FakeRepository(config), FakeBus())


def call(tool: str, arguments: dict[str, Any], call_id: str = "turn#1#a") -> ExecuteToolCall:
    return ExecuteToolCall(
        tenant_id="acme",
        correlation_id="wamid.1",
        conversation_id="conv-1",
        tool_call_id=call_id,
        tool=tool,
        arguments=arguments,
    )


async def test_a_booking_creates_the_event_and_records_the_fact(world: World) -> None:
    await world.service().execute(call("book_slot", {"start": MONDAY_10.isoformat()}))

    [completed] = world.bus.completions()
    assert completed.error is None and completed.result is not None
    assert list(world.calendar.events) == [completed.result["booking_id"]]
    assert [type(m) for m, _ in world.bus.published] == [SlotBooked, ToolCallCompleted]


async def test_a_redelivered_call_republishes_the_same_outcome_and_books_nothing(
    world: World,
) -> None:
    booking = call("book_slot", {"start": MONDAY_10.isoformat()})

    await world.service().execute(booking)
    await world.service().execute(booking)

    assert world.calendar.creates == 1
    first, again = world.bus.published[:2], world.bus.published[2:]
    assert [(m.event_id, i) for m, i in first] == [(m.event_id, i) for m, i in again]


async def test_an_unreachable_calendar_is_retried_then_reported_never_taken_as_free(
    world: World,
) -> None:
    world.calendar.down = True
    booking = call("book_slot", {"start": MONDAY_10.isoformat()})

    with pytest.raises(RetryLater):
        await world.service(attempts=3).execute(booking)
    await world.service(attempts=1).execute(booking)  # the last attempt

    [completed] = world.bus.completions()
    assert completed.error is not None
    assert (completed.error.code, completed.error.retryable) == ("fake_unavailable", True)
    assert world.calendar.events == {}
    assert {b.status for b in world.repo.bookings.values()} == {"released"}


async def test_a_slot_held_by_another_lead_offers_alternatives(world: World) -> None:
    await world.service().execute(call("book_slot", {"start": MONDAY_10.isoformat()}, "a"))
    await world.service().execute(call("book_slot", {"start": MONDAY_10.isoformat()}, "b"))

    lost = world.bus.completions()[1]
    assert lost.error is not None and lost.error.code == "slot_taken"
    assert lost.result is not None
    starts = [a["start"] for a in lost.result["alternatives"]]
    # 09:30-10:00 needs 15 minutes after it, and 10:30 falls in the 15 minutes after the
    # 10:00 booking: neither is offered
    assert starts == [
        "2031-03-03T09:00:00+01:00",
        "2031-03-03T11:00:00+01:00",
        "2031-03-03T11:30:00+01:00",
    ]


async def test_a_booking_moves_into_its_own_buffer(world: World) -> None:
    await world.service().execute(call("book_slot", {"start": MONDAY_10.isoformat()}, "a"))
    booked = world.bus.completions()[0].result
    assert booked is not None
    later = (MONDAY_10 + timedelta(minutes=30)).isoformat()

    await world.service().execute(
        call("reschedule_booking", {"booking_id": booked["booking_id"], "start": later}, "b")
    )

    moved = world.bus.completions()[1]
    assert moved.error is None and moved.result is not None
    assert moved.result["replaces"] == booked["booking_id"]
    assert [e.start for e in world.calendar.events.values()] == [MONDAY_10 + timedelta(minutes=30)]


async def test_rules_use_the_injected_clock(world: World) -> None:
    soon = (NOW + timedelta(minutes=30)).isoformat()

    await world.service().execute(call("book_slot", {"start": soon}))

    [completed] = world.bus.completions()
    assert completed.error is not None and completed.error.code == "too_soon"
