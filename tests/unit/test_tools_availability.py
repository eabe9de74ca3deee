"""Slot arithmetic: opening hours in the tenant's zone, slot length, buffers, lead time."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from taskpilot.tools.availability import (
    BookingPolicy,
    Interval,
    SlotRefused,
    alternatives,
    candidate_slots,
    check_requested_slot,
    free_slots,
    is_free,
)

MADRID = ZoneInfo("Europe/Madrid")
MONDAY = date(2031, 3, 3)
NOW = datetime(2031, 3, 1, 12, tzinfo=UTC)  # the Saturday before


def policy(**overrides: object) -> BookingPolicy:
    values: dict[str, object] = {
        "timezone": "Europe/Madrid",
        "opening_hours": {"mon": [(time(9), time(12))], "tue": [(time(9), time(10))]},
        "slot_minutes": 30,
        "lead_time_minutes": 60,
    }
    return BookingPolicy.model_validate(values | overrides)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=MADRID)


def test_slots_fill_the_opening_hours_in_the_tenants_zone() -> None:
    slots = candidate_slots(policy(), MONDAY, 2)

    assert [s.start.astimezone(MADRID).strftime("%a %H:%M") for s in slots] == [
        "Mon 09:00", "Mon 09:30", "Mon 10:00", "Mon 10:30", "Mon 11:00", "Mon 11:30",
        "Tue 09:00", "Tue 09:30",
    ]  # fmt: skip
    assert slots[0].start.astimezone(UTC).hour == 8  # CET is UTC+1 in March


def test_opening_hours_follow_summer_time() -> None:
    before, after = date(2031, 3, 24), date(2031, 3, 31)  # Madrid moves to UTC+2 on Mar 30

    first = [candidate_slots(policy(), d, 1)[0].start.astimezone(UTC).hour for d in (before, after)]

    assert first == [8, 7]


def test_a_slot_that_does_not_fit_before_closing_is_not_offered() -> None:
    slots = candidate_slots(policy(slot_minutes=45), MONDAY, 1)

    assert slots[-1].end <= local(MONDAY, 12)
    assert len(slots) == 4


def test_busy_time_and_buffers_block_slots() -> None:
    busy = [Interval(local(MONDAY, 10), local(MONDAY, 10, 30))]
    rules = policy(buffer_before_minutes=15, buffer_after_minutes=15)

    free = {
        s.start.astimezone(MADRID).strftime("%H:%M")
        for s in free_slots(rules, MONDAY, 1, busy, NOW)
    }

    assert free == {"09:00", "11:00", "11:30"}


def test_lead_time_hides_slots_too_soon() -> None:
    now = local(MONDAY, 9, 20).astimezone(UTC)

    free = free_slots(policy(), MONDAY, 1, [], now)

    assert free[0].start == local(MONDAY, 10, 30)


@pytest.mark.parametrize(
    ("start", "code"),
    [
        (datetime(2031, 2, 1, 10, tzinfo=MADRID), "slot_in_past"),
        (datetime(2031, 3, 1, 12, 30, tzinfo=UTC), "too_soon"),
        (datetime(2031, 3, 3, 12, tzinfo=MADRID), "outside_opening_hours"),
        (datetime(2031, 3, 3, 9, 15, tzinfo=MADRID), "outside_opening_hours"),
        (datetime(2031, 3, 5, 9, tzinfo=MADRID), "outside_opening_hours"),  # closed Wednesday
        (datetime(2032, 3, 1, 9, tzinfo=MADRID), "too_far_ahead"),
    ],
)
def test_requested_slots_are_checked_against_the_rules(start: datetime, code: str) -> None:
    with pytest.raises(SlotRefused) as refused:
        check_requested_slot(policy(), start, NOW)

    assert refused.value.code == code


def test_a_naive_request_is_read_as_the_tenants_wall_clock() -> None:
    slot = check_requested_slot(policy(), datetime(2031, 3, 3, 9, 30), NOW)

    assert slot == Interval(local(MONDAY, 9, 30), local(MONDAY, 10))


def test_alternatives_are_the_nearest_free_slots() -> None:
    wanted = Interval(local(MONDAY, 10), local(MONDAY, 10, 30))
    busy = [wanted]

    options = alternatives(policy(), wanted, busy, NOW)

    # 09:30 and 10:30 are 30 minutes away; of the two 60 minutes away the earlier wins
    assert [o.start for o in options] == [
        local(MONDAY, 9),
        local(MONDAY, 9, 30),
        local(MONDAY, 10, 30),
    ]
    assert all(is_free(policy(), o, busy) for o in options)


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        policy(timezone="Atlantis/Capital")
    with pytest.raises(ValueError, match="weekday"):
        policy(opening_hours={"funday": [(time(9), time(10))]})
    with pytest.raises(ValueError, match="end after"):
        policy(opening_hours={"mon": [(time(10), time(9))]})


def test_intervals_are_half_open() -> None:
    a = Interval(local(MONDAY, 9), local(MONDAY, 10))

    assert not a.overlaps(Interval(local(MONDAY, 10), local(MONDAY, 11)))
    assert a.widened(timedelta(0), timedelta(minutes=1)).overlaps(
        Interval(local(MONDAY, 10), local(MONDAY, 11))
    )
