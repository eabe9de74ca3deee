"""When a slot can be booked: opening hours, time zone, slot length, buffers, lead time and the
calendar's busy intervals. Pure functions, no I/O.

Every instant is timezone-aware; opening hours are wall-clock times in the tenant's zone, so a
day that changes to or from summer time still opens at the local hour written down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open span of time ``[start, end)``."""

    start: datetime
    end: datetime

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def widened(self, before: timedelta, after: timedelta) -> Interval:
        return Interval(self.start - before, self.end + after)


class BookingPolicy(BaseModel):
    """A tenant's rules for appointments."""

    model_config = ConfigDict(frozen=True)

    timezone: str = "UTC"
    opening_hours: dict[str, list[tuple[time, time]]] = Field(
        default_factory=lambda: {d: [(time(9), time(17))] for d in WEEKDAYS[:5]},
        description="Weekday ('mon'..'sun') to local opening spans; a missing day is closed",
    )
    slot_minutes: int = Field(default=30, ge=5, le=480)
    buffer_before_minutes: int = Field(default=0, ge=0, le=240)
    buffer_after_minutes: int = Field(default=0, ge=0, le=240)
    lead_time_minutes: int = Field(default=60, ge=0, le=60 * 24 * 14)
    horizon_days: int = Field(default=60, ge=1, le=365)
    event_title: str = "Appointment"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _sane_hours(self) -> BookingPolicy:
        for day, spans in self.opening_hours.items():
            if day not in WEEKDAYS:
                raise ValueError(f"unknown weekday {day!r}; use {', '.join(WEEKDAYS)}")
            if any(opens >= closes for opens, closes in spans):
                raise ValueError(f"{day}: an opening span must end after it starts")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def slot(self) -> timedelta:
        return timedelta(minutes=self.slot_minutes)

    @property
    def buffers(self) -> tuple[timedelta, timedelta]:
        return timedelta(minutes=self.buffer_before_minutes), timedelta(
            minutes=self.buffer_after_minutes
        )


def local(policy: BookingPolicy, moment: datetime) -> datetime:
    """``moment`` in the tenant's zone; a naive moment is read as the tenant's wall clock."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=policy.zone)
    return moment.astimezone(policy.zone)


def candidate_slots(policy: BookingPolicy, first_day: date, days: int) -> list[Interval]:
    """Every slot the opening hours allow on ``days`` local days from ``first_day``."""
    slots = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        for opens, closes in policy.opening_hours.get(WEEKDAYS[day.weekday()], []):
            start = datetime.combine(day, opens, policy.zone)
            close = datetime.combine(day, closes, policy.zone)
            while start + policy.slot <= close:
                slots.append(Interval(start, start + policy.slot))
                start += policy.slot
    return slots


def is_free(policy: BookingPolicy, slot: Interval, busy: list[Interval]) -> bool:
    """No busy interval comes within the buffers of ``slot``."""
    guarded = slot.widened(*policy.buffers)
    return not any(guarded.overlaps(b) for b in busy)


def earliest_start(policy: BookingPolicy, now: datetime) -> datetime:
    return now + timedelta(minutes=policy.lead_time_minutes)


def free_slots(
    policy: BookingPolicy, first_day: date, days: int, busy: list[Interval], now: datetime
) -> list[Interval]:
    """Bookable slots in the window, earliest first."""
    earliest = earliest_start(policy, now)
    return [
        s
        for s in candidate_slots(policy, first_day, days)
        if s.start >= earliest and is_free(policy, s, busy)
    ]


class SlotRefused(Exception):
    """Why a requested slot cannot be booked; ``code`` is what the model reads."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def check_requested_slot(policy: BookingPolicy, start: datetime, now: datetime) -> Interval:
    """The slot starting at ``start`` if the rules allow it (the calendar is checked apart)."""
    start = local(policy, start)
    if start <= now:
        raise SlotRefused("slot_in_past", f"{start.isoformat()} is in the past")
    if start < earliest_start(policy, now):
        raise SlotRefused("too_soon", f"bookings need {policy.lead_time_minutes} minutes' notice")
    if start.date() > (now.astimezone(policy.zone) + timedelta(days=policy.horizon_days)).date():
        raise SlotRefused("too_far_ahead", f"bookings open {policy.horizon_days} days ahead")
    wanted = Interval(start, start + policy.slot)
    if wanted not in candidate_slots(policy, start.date(), 1):
        raise SlotRefused(
            "outside_opening_hours",
            f"{start.strftime('%a %H:%M')} is not a slot start within opening hours",
        )
    return wanted


def window_days(policy: BookingPolicy, start: datetime, days: int) -> tuple[datetime, datetime]:
    """The instants spanned by ``days`` local days from ``start``'s day, for a busy query."""
    first = datetime.combine(local(policy, start).date(), time(0), policy.zone)
    return first, datetime.combine(first.date() + timedelta(days=days), time(0), policy.zone)


def alternatives(
    policy: BookingPolicy, wanted: Interval, busy: list[Interval], now: datetime, count: int = 3
) -> list[Interval]:
    """The free slots nearest to ``wanted`` (two days around it), nearest first."""
    first = local(policy, wanted.start).date() - timedelta(days=1)
    found = free_slots(policy, first, 3, busy, now)
    found.sort(key=lambda s: (abs(s.start - wanted.start), s.start))
    return sorted(found[:count])
