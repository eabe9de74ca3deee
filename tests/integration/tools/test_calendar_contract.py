"""The calendar port's contract, run against every adapter: CalDAV on a real Radicale server
and Google Calendar on the stand-in that speaks its JSON."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from taskpilot.runtime.servers import free_port
from taskpilot.tools.adapters import (
    CalDavCalendar,
    Calendar,
    CalendarEvent,
    GoogleCalendar,
    GoogleTokens,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from taskpilot.tools.availability import Interval
from tests.integration.tools.conftest import Radicale
from tests.integration.tools.standins import GoogleStandIn

pytestmark = pytest.mark.asyncio(loop_scope="session")

DAY = datetime(2031, 3, 4, tzinfo=UTC)


def event(hour: int, minutes: int = 30, uid: str | None = None) -> CalendarEvent:
    start = DAY + timedelta(hours=hour)
    return CalendarEvent(
        uid=uid or uuid.uuid4().hex,
        start=start,
        end=start + timedelta(minutes=minutes),
        summary="Appointment: Ana",
        description="Booked by TaskPilot",
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def google_calendar(
    http: httpx.AsyncClient, google: tuple[GoogleStandIn, str], refresh: str = "1//refresh"
) -> GoogleCalendar:
    standin, url = google
    standin.add_client("client-1", "secret-1", "1//refresh")
    return GoogleCalendar(
        http,
        GoogleTokens(http, f"{url}/token"),
        url,
        calendar_id=f"{uuid.uuid4().hex}@group.calendar.google.com",
        client_id="client-1",
        client_secret="secret-1",
        refresh_token=refresh,
    )


@pytest.fixture(params=["caldav", "google"])
def calendar(
    request: pytest.FixtureRequest,
    radicale: Radicale,
    google: tuple[GoogleStandIn, str],
    http: httpx.AsyncClient,
) -> Calendar:
    if request.param == "caldav":
        user = f"u{uuid.uuid4().hex[:8]}"
        return CalDavCalendar(
            radicale.new_calendar(user), username=user, password="pw", allow_private=True
        )
    return google_calendar(http, google)


async def test_an_empty_calendar_is_free(calendar: Calendar) -> None:
    assert await calendar.busy(DAY, DAY + timedelta(days=1)) == []


async def test_a_created_event_is_busy_and_can_be_found(calendar: Calendar) -> None:
    booked = event(10)

    await calendar.create_event(booked)

    assert await calendar.busy(DAY, DAY + timedelta(days=1)) == [Interval(booked.start, booked.end)]
    found = await calendar.find_event(booked.uid)
    assert found is not None
    assert (found.start, found.end, found.summary) == (booked.start, booked.end, booked.summary)


async def test_busy_covers_only_the_window_asked(calendar: Calendar) -> None:
    await calendar.create_event(event(9))
    await calendar.create_event(event(15))

    busy = await calendar.busy(DAY + timedelta(hours=12), DAY + timedelta(hours=18))

    assert busy == [Interval(DAY + timedelta(hours=15), DAY + timedelta(hours=15, minutes=30))]


async def test_creating_the_same_uid_again_creates_nothing(calendar: Calendar) -> None:
    booked = event(11)

    await calendar.create_event(booked)
    await calendar.create_event(booked)

    assert len(await calendar.busy(DAY, DAY + timedelta(days=1))) == 1


async def test_a_deleted_event_is_gone_and_deleting_again_says_so(calendar: Calendar) -> None:
    booked = event(12)
    await calendar.create_event(booked)

    assert await calendar.delete_event(booked.uid) is True
    assert await calendar.find_event(booked.uid) is None
    assert await calendar.busy(DAY, DAY + timedelta(days=1)) == []
    assert await calendar.delete_event(booked.uid) is False


async def test_a_missing_event_is_not_found(calendar: Calendar) -> None:
    assert await calendar.find_event(uuid.uuid4().hex) is None


async def test_an_unreachable_calendar_is_unknown_never_free(
    calendar: Calendar, http: httpx.AsyncClient
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    if isinstance(calendar, CalDavCalendar):
        broken: Calendar = CalDavCalendar(
            f"{dead}/u/cal/", username="u", password="p", allow_private=True
        )
    else:
        broken = GoogleCalendar(
            http,
            GoogleTokens(http, f"{dead}/token"),
            dead,
            calendar_id="primary",
            client_id="c",
            client_secret="s",
            refresh_token="r",
        )

    with pytest.raises(ProviderUnavailableError):
        await broken.busy(DAY, DAY + timedelta(days=1))


# -- adapter-specific behaviour -------------------------------------------------------------


async def test_caldav_missing_collection_is_rejected(radicale: Radicale) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    radicale.new_calendar(user)
    missing = CalDavCalendar(
        f"{radicale.url}{user}/nope/", username=user, password="pw", allow_private=True
    )

    with pytest.raises(ProviderRejectedError, match="404"):
        await missing.busy(DAY, DAY + timedelta(days=1))


async def test_google_refreshes_an_expired_access_token(
    google: tuple[GoogleStandIn, str], http: httpx.AsyncClient
) -> None:
    calendar = google_calendar(http, google)
    await calendar.busy(DAY, DAY + timedelta(days=1))
    refreshes = google[0].refreshes
    google[0].expire_tokens()

    assert await calendar.busy(DAY, DAY + timedelta(days=1)) == []
    assert google[0].refreshes == refreshes + 1


async def test_google_revoked_refresh_token_is_rejected(
    google: tuple[GoogleStandIn, str], http: httpx.AsyncClient
) -> None:
    calendar = google_calendar(http, google, refresh="1//revoked")

    with pytest.raises(ProviderRejectedError):
        await calendar.busy(DAY, DAY + timedelta(days=1))


async def test_google_per_calendar_freebusy_errors_are_unknown_not_free(
    google: tuple[GoogleStandIn, str], http: httpx.AsyncClient
) -> None:
    calendar = google_calendar(http, google)
    google[0].freebusy_errors.add(calendar._calendar_id)

    with pytest.raises(ProviderUnavailableError):
        await calendar.busy(DAY, DAY + timedelta(days=1))


async def test_google_server_errors_are_transient(
    google: tuple[GoogleStandIn, str], http: httpx.AsyncClient
) -> None:
    calendar = google_calendar(http, google)
    google[0].fail_next.append(503)

    with pytest.raises(ProviderUnavailableError):
        await calendar.busy(DAY, DAY + timedelta(days=1))
    assert await calendar.busy(DAY, DAY + timedelta(days=1)) == []
