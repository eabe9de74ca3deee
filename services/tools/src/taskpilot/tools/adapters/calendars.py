"""The calendar port and its adapters: CalDAV and Google Calendar."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import caldav
import httpx
import icalendar
import requests
from caldav.lib import error as caldav_error

from taskpilot.tools.adapters.errors import (
    ProviderRejectedError,
    ProviderUnavailableError,
    raise_for_status,
)
from taskpilot.tools.adapters.targets import check_target
from taskpilot.tools.availability import Interval


@dataclass(frozen=True)
class CalendarEvent:
    uid: str
    start: datetime
    end: datetime
    summary: str
    description: str = ""


class Calendar(Protocol):
    """One tenant's bookable calendar.

    ``busy`` answers for a window or raises: a calendar that cannot answer is *unknown*, never
    free. ``create_event`` is idempotent by ``event.uid``: creating an existing uid again is a
    no-op (so a redelivered booking never makes a second event). ``find_event`` returns None
    for a missing or cancelled event; ``delete_event`` returns whether it deleted one.
    """

    name: str

    async def busy(self, start: datetime, end: datetime) -> list[Interval]: ...

    async def create_event(self, event: CalendarEvent) -> None: ...

    async def find_event(self, uid: str) -> CalendarEvent | None: ...

    async def delete_event(self, uid: str) -> bool: ...


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _freebusy_intervals(data: str) -> list[Interval]:
    found = []
    for component in icalendar.Calendar.from_ical(data).walk("VFREEBUSY"):
        periods = component.get("FREEBUSY", [])
        for prop in periods if isinstance(periods, list) else [periods]:
            if str(prop.params.get("FBTYPE", "BUSY")).upper() == "FREE":
                continue
            for start, end_or_length in _periods(prop):
                end = (
                    end_or_length if isinstance(end_or_length, datetime) else start + end_or_length
                )
                found.append(Interval(utc(start), utc(end)))
    return sorted(found)


def _periods(prop: Any) -> list[tuple[datetime, Any]]:
    # icalendar gives one vPeriod, or a list of them, depending on how the server wrote it.
    dt = getattr(prop, "dt", None)
    if isinstance(dt, tuple):
        return [dt]
    if isinstance(dt, list):
        return [p.dt if hasattr(p, "dt") else p for p in dt]
    return []


class CalDavCalendar:
    """CalDAV (Radicale, Nextcloud, iCloud, Fastmail) through the ``caldav`` client.

    The client is synchronous, so every call runs in a worker thread. Busy time comes from the
    free-busy REPORT; events are stored as ``{uid}.ics``.
    """

    name = "caldav"

    def __init__(
        self,
        calendar_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        allow_private: bool = False,
    ):
        self._url = calendar_url
        self._allow_private = allow_private
        self._username = username
        self._password = password
        self._timeout = timeout

    def _calendar(self) -> caldav.Calendar:
        check_target(self.name, self._url, self._allow_private)
        client = caldav.DAVClient(
            self._url,
            username=self._username,
            password=self._password,
            timeout=max(1, round(self._timeout)),
        )
        return caldav.Calendar(client=client, url=self._url)

    async def _run(self, work: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(work, *args)
        except (caldav_error.AuthorizationError, caldav_error.NotFoundError) as exc:
            raise ProviderRejectedError(self.name, f"{type(exc).__name__}: {exc}") from exc
        except (requests.RequestException, caldav_error.DAVError, OSError) as exc:
            raise ProviderUnavailableError(self.name, f"{type(exc).__name__}: {exc}") from exc

    async def busy(self, start: datetime, end: datetime) -> list[Interval]:
        def work() -> list[Interval]:
            report = self._calendar().freebusy_request(utc(start), utc(end))
            return _freebusy_intervals(report.data)

        return list(await self._run(work))

    async def create_event(self, event: CalendarEvent) -> None:
        ics = _ics(event)

        def work() -> None:
            try:
                self._calendar().save_event(ics, no_overwrite=True)
            except caldav_error.ConsistencyError:
                return  # the uid exists: created by an earlier delivery of the same call

        await self._run(work)

    async def find_event(self, uid: str) -> CalendarEvent | None:
        def work() -> CalendarEvent | None:
            try:
                found = self._calendar().event_by_uid(uid)
            except caldav_error.NotFoundError:
                return None
            component = found.icalendar_component
            return CalendarEvent(
                uid=uid,
                start=utc(component.get("dtstart").dt),
                end=utc(component.get("dtend").dt),
                summary=str(component.get("summary", "")),
                description=str(component.get("description", "")),
            )

        result: CalendarEvent | None = await self._run(work)
        return result

    async def delete_event(self, uid: str) -> bool:
        def work() -> bool:
            try:
                self._calendar().event_by_uid(uid).delete()
            except caldav_error.NotFoundError:
                return False
            return True

        return bool(await self._run(work))


def _ics(event: CalendarEvent) -> str:
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//TaskPilot//tools//EN")
    calendar.add("version", "2.0")
    vevent = icalendar.Event()
    vevent.add("uid", event.uid)
    vevent.add("dtstamp", datetime.now(UTC))
    vevent.add("dtstart", utc(event.start))
    vevent.add("dtend", utc(event.end))
    vevent.add("summary", event.summary)
    if event.description:
        vevent.add("description", event.description)
    calendar.add_component(vevent)
    return str(calendar.to_ical().decode())


@dataclass
class GoogleTokens:
    """Access tokens per (client, refresh token), refreshed before they expire.

    One instance per process (built in the composition root); a 401 from the API drops the
    cached token so the next call refreshes it.
    """

    http: httpx.AsyncClient
    token_url: str
    _cache: dict[str, tuple[float, str]] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    @staticmethod
    def _key(client_id: str, refresh_token: str) -> str:
        return hashlib.sha256(f"{client_id}\x1f{refresh_token}".encode()).hexdigest()

    def forget(self, client_id: str, refresh_token: str) -> None:
        self._cache.pop(self._key(client_id, refresh_token), None)

    async def access_token(self, client_id: str, client_secret: str, refresh_token: str) -> str:
        key = self._key(client_id, refresh_token)
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._cache.get(key)
            if cached and cached[0] > time.monotonic():
                return cached[1]
            try:
                response = await self.http.post(
                    self.token_url,
                    data={
                        "grant_type": "refresh_token",
                        "client_id": client_id,
                        "client_secret": client_secret,
                        "refresh_token": refresh_token,
                    },
                )
            except httpx.HTTPError as exc:
                raise ProviderUnavailableError("google", f"token refresh: {exc!r}") from exc
            raise_for_status("google", response.status_code, response.text)
            body = response.json()
            expires_in = float(body.get("expires_in", 3600))
            self._cache[key] = (time.monotonic() + max(expires_in - 60, 0), body["access_token"])
            return str(body["access_token"])


class GoogleCalendar:
    """Google Calendar API v3: ``freeBusy.query``, ``events.insert/get/delete``.

    OAuth per tenant: the tenant's client id/secret and refresh token buy short-lived access
    tokens. Event ids are the booking uids (hex, which Google's base32hex alphabet accepts), so
    an insert repeated by a redelivery answers 409 and creates nothing.
    """

    name = "google"

    def __init__(
        self,
        http: httpx.AsyncClient,
        tokens: GoogleTokens,
        api_base: str,
        *,
        calendar_id: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
    ):
        self._http = http
        self._tokens = tokens
        self._api = api_base.rstrip("/") + "/calendar/v3"
        self._calendar_id = calendar_id
        self._client = (client_id, client_secret, refresh_token)

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in (1, 2):
            token = await self._tokens.access_token(*self._client)
            try:
                response = await self._http.request(
                    method,
                    self._api + path,
                    headers={"Authorization": f"Bearer {token}"},
                    **kwargs,
                )
            except httpx.HTTPError as exc:
                raise ProviderUnavailableError(self.name, f"{method} {path}: {exc!r}") from exc
            if response.status_code == 401 and attempt == 1:
                self._tokens.forget(self._client[0], self._client[2])
                continue
            return response
        return response

    def _events(self, event_id: str = "") -> str:
        path = f"/calendars/{httpx.URL(self._calendar_id).raw_path.decode()}/events"
        return f"{path}/{event_id}" if event_id else path

    async def busy(self, start: datetime, end: datetime) -> list[Interval]:
        response = await self._call(
            "POST",
            "/freeBusy",
            json={
                "timeMin": utc(start).isoformat(),
                "timeMax": utc(end).isoformat(),
                "items": [{"id": self._calendar_id}],
            },
        )
        raise_for_status(self.name, response.status_code, response.text)
        calendar = response.json().get("calendars", {}).get(self._calendar_id)
        if calendar is None or calendar.get("errors"):
            # freeBusy answers 200 with per-calendar errors: that calendar's time is unknown.
            raise ProviderUnavailableError(self.name, f"freeBusy errors: {calendar}")
        return sorted(
            Interval(utc(datetime.fromisoformat(b["start"])), utc(datetime.fromisoformat(b["end"])))
            for b in calendar.get("busy", [])
        )

    async def create_event(self, event: CalendarEvent) -> None:
        response = await self._call(
            "POST",
            self._events(),
            json={
                "id": event.uid,
                "summary": event.summary,
                "description": event.description,
                "start": {"dateTime": utc(event.start).isoformat()},
                "end": {"dateTime": utc(event.end).isoformat()},
            },
        )
        if response.status_code == 409:
            return  # this id exists: an earlier delivery of the same call created it
        raise_for_status(self.name, response.status_code, response.text)

    async def find_event(self, uid: str) -> CalendarEvent | None:
        response = await self._call("GET", self._events(uid))
        if response.status_code in (404, 410):
            return None
        raise_for_status(self.name, response.status_code, response.text)
        body = response.json()
        if body.get("status") == "cancelled":
            return None
        return CalendarEvent(
            uid=uid,
            start=utc(datetime.fromisoformat(body["start"]["dateTime"])),
            end=utc(datetime.fromisoformat(body["end"]["dateTime"])),
            summary=body.get("summary", ""),
            description=body.get("description", ""),
        )

    async def delete_event(self, uid: str) -> bool:
        response = await self._call("DELETE", self._events(uid))
        if response.status_code in (404, 410):
            return False
        raise_for_status(self.name, response.status_code, response.text)
        return True
