"""Provider I/O: the calendar, payments and workflow ports with their adapters, and the
outgoing-webhook sender.

Each adapter turns its client's failures into two named errors: :class:`ProviderUnavailable`
(transient: network, timeouts, 429, 5xx — retry later; for a calendar it means *unknown*, never
*free*) and :class:`ProviderRejected` (the provider said no: bad credentials, missing calendar,
invalid request — retrying cannot help). The service translates them at its edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import caldav
import httpx
import icalendar
import jwt
import requests
import stripe
from caldav.lib import error as caldav_error
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError
from nats.js.errors import NotFoundError as NatsNotFoundError

from taskpilot.contracts import Message, subjects
from taskpilot.contracts.catalogue import OneOf
from taskpilot.contracts.conversation import CONVERSATION_EVENTS
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.tools.availability import Interval
from taskpilot.tools.signing import signature_header


class ProviderError(Exception):
    def __init__(self, provider: str, message: str):
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class ProviderUnavailableError(ProviderError):
    """The provider could not answer now (network, timeout, rate limit, 5xx): retry later."""


class ProviderRejectedError(ProviderError):
    """The provider refused the request for good (credentials, configuration, validation)."""


def _raise_for_status(provider: str, status: int, body: str) -> None:
    if status == 429 or status >= 500:
        raise ProviderUnavailableError(provider, f"HTTP {status}: {body[:300]}")
    if status >= 400:
        raise ProviderRejectedError(provider, f"HTTP {status}: {body[:300]}")


# -- calendar ---------------------------------------------------------------------------------


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


def _utc(moment: datetime) -> datetime:
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
                found.append(Interval(_utc(start), _utc(end)))
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
    ):
        self._url = calendar_url
        self._username = username
        self._password = password
        self._timeout = timeout

    def _calendar(self) -> caldav.Calendar:
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
            report = self._calendar().freebusy_request(_utc(start), _utc(end))
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
                start=_utc(component.get("dtstart").dt),
                end=_utc(component.get("dtend").dt),
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
    vevent.add("dtstart", _utc(event.start))
    vevent.add("dtend", _utc(event.end))
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
            _raise_for_status("google", response.status_code, response.text)
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
                "timeMin": _utc(start).isoformat(),
                "timeMax": _utc(end).isoformat(),
                "items": [{"id": self._calendar_id}],
            },
        )
        _raise_for_status(self.name, response.status_code, response.text)
        calendar = response.json().get("calendars", {}).get(self._calendar_id)
        if calendar is None or calendar.get("errors"):
            # freeBusy answers 200 with per-calendar errors: that calendar's time is unknown.
            raise ProviderUnavailableError(self.name, f"freeBusy errors: {calendar}")
        return sorted(
            Interval(
                _utc(datetime.fromisoformat(b["start"])), _utc(datetime.fromisoformat(b["end"]))
            )
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
                "start": {"dateTime": _utc(event.start).isoformat()},
                "end": {"dateTime": _utc(event.end).isoformat()},
            },
        )
        if response.status_code == 409:
            return  # this id exists: an earlier delivery of the same call created it
        _raise_for_status(self.name, response.status_code, response.text)

    async def find_event(self, uid: str) -> CalendarEvent | None:
        response = await self._call("GET", self._events(uid))
        if response.status_code in (404, 410):
            return None
        _raise_for_status(self.name, response.status_code, response.text)
        body = response.json()
        if body.get("status") == "cancelled":
            return None
        return CalendarEvent(
            uid=uid,
            start=_utc(datetime.fromisoformat(body["start"]["dateTime"])),
            end=_utc(datetime.fromisoformat(body["end"]["dateTime"])),
            summary=body.get("summary", ""),
            description=body.get("description", ""),
        )

    async def delete_event(self, uid: str) -> bool:
        response = await self._call("DELETE", self._events(uid))
        if response.status_code in (404, 410):
            return False
        _raise_for_status(self.name, response.status_code, response.text)
        return True


# -- payments ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckoutRequest:
    idempotency_key: str
    description: str
    amount_minor: int
    currency: str
    success_url: str
    cancel_url: str | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class CheckoutLink:
    session_id: str
    url: str
    amount_minor: int
    currency: str


class Payments(Protocol):
    """Creates hosted payment pages for one tenant's account.

    ``create_checkout`` is idempotent by ``request.idempotency_key``: the same key returns the
    same session (the provider keeps keys for a day; the service keeps results forever).
    ``metadata`` comes back in the provider's payment webhooks.
    """

    name: str

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutLink: ...


class StripePayments:
    """Stripe Checkout Sessions through stripe-python's async client."""

    name = "stripe"

    def __init__(self, client: stripe.StripeClient):
        self._client = client

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutLink:
        params: dict[str, Any] = {
            "mode": "payment",
            "success_url": request.success_url,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.currency,
                        "unit_amount": request.amount_minor,
                        "product_data": {"name": request.description},
                    },
                }
            ],
            "metadata": request.metadata,
            "client_reference_id": request.metadata.get("conversation_id") or None,
            "payment_intent_data": {"metadata": request.metadata},
        }
        if request.cancel_url:
            params["cancel_url"] = request.cancel_url
        try:
            session = await self._client.v1.checkout.sessions.create_async(
                params={k: v for k, v in params.items() if v is not None},  # type: ignore[arg-type]
                options={"idempotency_key": request.idempotency_key},
            )
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise ProviderUnavailableError(self.name, str(exc)) from exc
        except stripe.StripeError as exc:
            if exc.http_status is None or exc.http_status >= 500:
                raise ProviderUnavailableError(self.name, str(exc)) from exc
            raise ProviderRejectedError(self.name, str(exc)) from exc
        return CheckoutLink(
            session_id=session.id,
            url=str(session.url),
            amount_minor=int(session.amount_total or request.amount_minor),
            currency=str(session.currency or request.currency),
        )


def stripe_client(api_key: str, api_base: str | None) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else None,
        http_client=stripe.HTTPXClient(),
        max_network_retries=0,  # retries are the consumer policy's, with its backoff
    )


# -- workflows and outgoing webhooks ---------------------------------------------------------


@dataclass(frozen=True)
class WorkflowRequest:
    url: str
    payload: dict[str, Any]
    idempotency_key: str
    auth: str = "none"
    header_name: str = "X-TaskPilot-Auth"
    secret: str | None = None
    subject: str = ""


class WorkflowTrigger(Protocol):
    """Starts a workflow (n8n or any webhook-triggered automation) and returns its answer.

    Authenticates with a shared secret in a header, or with a short-lived HS256 JWT signed by
    the secret (``Authorization: Bearer``). Sends ``Idempotency-Key`` so a receiver can drop a
    repeated trigger.
    """

    async def trigger(self, request: WorkflowRequest) -> dict[str, Any]: ...


class HttpWorkflowTrigger:
    def __init__(self, http: httpx.AsyncClient, *, jwt_ttl_s: int = 300):
        self._http = http
        self._ttl = jwt_ttl_s

    def _auth_headers(self, request: WorkflowRequest) -> dict[str, str]:
        if request.auth == "none" or not request.secret:
            return {}
        if request.auth == "header":
            return {request.header_name: request.secret}
        now = int(time.time())
        claims = {"iss": "taskpilot", "sub": request.subject, "iat": now, "exp": now + self._ttl}
        return {"Authorization": f"Bearer {jwt.encode(claims, request.secret, 'HS256')}"}

    async def trigger(self, request: WorkflowRequest) -> dict[str, Any]:
        try:
            response = await self._http.post(
                request.url,
                json=request.payload,
                headers={"Idempotency-Key": request.idempotency_key, **self._auth_headers(request)},
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailableError("workflow", repr(exc)) from exc
        _raise_for_status("workflow", response.status_code, response.text)
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = {"text": response.text[:2000]}
        return {"status": response.status_code, "response": body}


class WebhookSender:
    """POSTs one signed event to a tenant's endpoint (``TaskPilot-Signature: t=..,v1=..``)."""

    def __init__(self, http: httpx.AsyncClient):
        self._http = http

    async def send(
        self, url: str, secret: str, delivery_id: str, event_type: str, body: bytes
    ) -> None:
        timestamp = int(time.time())
        try:
            response = await self._http.post(
                url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "TaskPilot-Signature": signature_header(secret, timestamp, body),
                    "TaskPilot-Delivery-Id": delivery_id,
                    "TaskPilot-Event-Type": event_type,
                },
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailableError("webhook", repr(exc)) from exc
        if response.status_code >= 300:
            raise ProviderUnavailableError("webhook", f"HTTP {response.status_code}")


class Providers:
    """Builds a tenant's adapters from its stored connection (one instance per process)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        google_api_base: str,
        google_token_url: str,
        stripe_api_base: str | None = None,
        caldav_timeout_s: float = 10.0,
    ):
        self.http = http
        self.google_tokens = GoogleTokens(http, google_token_url)
        self._google_api = google_api_base
        self._stripe_api = stripe_api_base
        self._caldav_timeout = caldav_timeout_s
        self._stripe: dict[str, stripe.StripeClient] = {}
        self.workflows = HttpWorkflowTrigger(http)
        self.webhooks = WebhookSender(http)

    def calendar(
        self, provider: str, settings: dict[str, Any], secrets: dict[str, Any]
    ) -> Calendar:
        if provider == "google":
            return GoogleCalendar(
                self.http,
                self.google_tokens,
                self._google_api,
                calendar_id=settings["calendar_id"],
                client_id=settings["client_id"],
                client_secret=secrets["client_secret"],
                refresh_token=secrets["refresh_token"],
            )
        return CalDavCalendar(
            str(settings["calendar_url"]),
            username=settings.get("username"),
            password=secrets.get("password"),
            timeout=self._caldav_timeout,
        )

    def payments(self, secrets: dict[str, Any]) -> Payments:
        key = hashlib.sha256(secrets["api_key"].encode()).hexdigest()
        client = self._stripe.get(key)
        if client is None:
            client = self._stripe[key] = stripe_client(secrets["api_key"], self._stripe_api)
        return StripePayments(client)


class DeadLetterArchive:
    """Reads the DEAD_LETTERS stream: one letter by sequence, or a tenant's letters of one
    consumer (the subject ``dlq.{tenant}.{origin}`` holds exactly those)."""

    def __init__(self, js: JetStreamContext):
        self._js = js

    async def letter(self, seq: int) -> DeadLettered | None:
        try:
            raw = await self._js.get_msg(subjects.DEAD_LETTERS.name, seq)
        except NatsNotFoundError:
            return None
        return DeadLettered.model_validate_json(raw.data or b"")

    async def letters(
        self, tenant_id: str, origin: str, limit: int
    ) -> list[tuple[int, DeadLettered]]:
        subject = subjects.DEAD_LETTER.subject(tenant=tenant_id, origin=origin)
        found: list[tuple[int, DeadLettered]] = []
        sub = await self._js.subscribe(subject, ordered_consumer=True)
        try:
            while len(found) < limit:
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except NatsTimeoutError:
                    break
                found.append(
                    (msg.metadata.sequence.stream, DeadLettered.model_validate_json(msg.data))
                )
                if msg.metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        return found


class ConversationHistory:
    """Reads a tenant's public conversation events of a time window from the CONVERSATION
    stream (its own facts, published for every reader), oldest first, in pages."""

    def __init__(self, js: JetStreamContext, page: int = 500):
        self._js = js
        self._page = page

    async def events(self, tenant_id: str, start: datetime, end: datetime) -> list[Message]:
        parser = OneOf(*CONVERSATION_EVENTS)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=_utc(start),
        )
        found: list[Message] = []
        sub = await self._js.subscribe(
            subjects.CONVERSATION_EVENT.wildcard(tenant=tenant_id),
            ordered_consumer=True,
            config=config,
        )
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except NatsTimeoutError:
                    break
                if msg.metadata.timestamp >= _utc(end):
                    break
                event = parser.model_validate_json(msg.data)
                if event is not None:
                    found.append(event)
                if msg.metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        return found


async def ensure_job_queue(js: JetStreamContext) -> None:
    """The TOOL_JOBS work-queue stream (created here: the shared provisioning sets no
    retention, and a stream's retention cannot change after creation)."""
    stream = subjects.TOOL_JOBS
    config = StreamConfig(
        name=stream.name,
        description=stream.description,
        subjects=list(stream.subjects),
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=stream.duplicate_window_s,
    )
    try:
        await js.stream_info(stream.name)
    except NatsNotFoundError:
        with contextlib.suppress(BadRequestError):  # another replica created it first
            await js.add_stream(config)
