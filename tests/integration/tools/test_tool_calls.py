"""Tool calls through the real entrypoint: ExecuteToolCall on NATS → the tools service (built
by its composition root) → Radicale / the Google and Stripe stand-ins → ToolCallCompleted."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

import httpx
import psycopg
import pytest

from taskpilot.contracts.tools import (
    BookingCancelled,
    ExecuteToolCall,
    SlotBooked,
    ToolCallCompleted,
)
from taskpilot.runtime.bus import Bus
from taskpilot.runtime.testing import eventually
from taskpilot.tools.adapters import CalDavCalendar, CalendarEvent
from taskpilot.tools.availability import Interval
from tests.integration.tools.conftest import Collected, Radicale
from tests.integration.tools.helpers import (
    at,
    caldav_connection,
    configure,
    google_connection,
    next_monday,
    send,
    tool_call,
)
from tests.integration.tools.standins import GoogleStandIn, Receiver, StripeStandIn

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def caldav_tenant(api: httpx.AsyncClient, radicale: Radicale, tenant: str) -> CalDavCalendar:
    """A tenant with every tool enabled and a fresh Radicale calendar; returns that calendar."""
    url = radicale.new_calendar(tenant)
    await configure(api, tenant, calendar=caldav_connection(url, tenant))
    return CalDavCalendar(url, username=tenant, password="caldav-password", allow_private=True)


async def completion(collected: Collected, call: ExecuteToolCall) -> ToolCallCompleted:
    async def done() -> list[ToolCallCompleted]:
        return [c for c in collected.of(ToolCallCompleted) if c.tool_call_id == call.tool_call_id]

    [first, *_] = await eventually(done, timeout=20, what=f"completion of {call.tool}")
    return first


async def drained(bus: Bus) -> None:
    """Every tool call published so far has been handled and acknowledged."""

    async def idle() -> bool:
        info = await bus.js.consumer_info("TOOLS", "tools-execute")
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(idle, timeout=30, what="tools-execute drained")


async def test_availability_respects_hours_buffers_and_existing_events(
    bus: Bus, collected: Collected, caldav_tenant: CalDavCalendar, tenant: str
) -> None:
    day = next_monday()
    await caldav_tenant.create_event(
        CalendarEvent("external-1", at(day, 10), at(day, 11), "Dentist (not ours)")
    )

    call = await send(bus, tool_call(tenant, "check_availability", {"day": str(day), "days": 1}))
    done = await completion(collected, call)

    assert done.error is None and done.result is not None
    starts = [s["start"][11:16] for s in done.result["slots"]]
    assert starts[0] == "09:00" and starts[-1] == "16:30"
    # 10:00-11:00 is busy; 09:30 would end at 10:00 but needs 15 minutes after it
    assert "09:30" not in starts and "10:00" not in starts and "10:30" not in starts
    assert "11:00" in starts
    assert done.result["timezone"] == "Europe/Madrid"


async def test_booking_makes_one_event_and_a_slot_booked_fact(
    bus: Bus, collected: Collected, caldav_tenant: CalDavCalendar, tenant: str
) -> None:
    start = at(next_monday(), 12)

    call = await send(
        bus, tool_call(tenant, "book_slot", {"start": start.isoformat(), "name": "Ana"})
    )
    done = await completion(collected, call)

    assert done.error is None and done.result is not None
    assert done.result["status"] == "booked"
    assert await caldav_tenant.busy(start, start + timedelta(hours=1)) == [
        Interval(start, start + timedelta(minutes=30))
    ]
    event = await caldav_tenant.find_event(done.result["booking_id"])
    assert event is not None and event.summary == "Appointment: Ana"
    [booked] = await collected.wait_for(SlotBooked)
    assert booked.booking_id == done.result["booking_id"]
    assert booked.correlation_id == call.correlation_id


async def test_twenty_leads_racing_for_one_slot_get_exactly_one_booking(
    bus: Bus, collected: Collected, caldav_tenant: CalDavCalendar, tenant: str
) -> None:
    start = at(next_monday(), 15)
    calls = [
        tool_call(tenant, "book_slot", {"start": start.isoformat()}, conversation=f"lead-{n}")
        for n in range(20)
    ]

    await asyncio.gather(*(send(bus, c) for c in calls))
    done = await collected.wait_for(ToolCallCompleted, 20, timeout=60)

    booked = [d for d in done if d.error is None]
    refused = [d for d in done if d.error is not None]
    assert len(booked) == 1 and len(refused) == 19
    assert {d.error.code for d in refused if d.error} == {"slot_taken"}
    for d in refused:
        assert d.result and d.result["alternatives"], "every loser is offered alternatives"
        assert start.isoformat() not in {a["start"] for a in d.result["alternatives"]}
    assert (
        len(await caldav_tenant.busy(start - timedelta(hours=1), start + timedelta(hours=1))) == 1
    )


async def test_redelivered_commands_create_no_second_event_or_payment_link(
    bus: Bus,
    api: httpx.AsyncClient,
    collected: Collected,
    caldav_tenant: CalDavCalendar,
    tenant: str,
    stripe_standin: tuple[StripeStandIn, str],
    tools_database: str,
) -> None:
    await configure(
        api,
        tenant,
        calendar=None,
        stripe_url=stripe_standin[1],
    )
    start = at(next_monday(), 9)
    book = tool_call(tenant, "book_slot", {"start": start.isoformat()})
    pay = tool_call(tenant, "create_payment_link", {"product": "haircut"})

    # Past JetStream's duplicate window a redelivery is a new message: different Msg-Ids.
    for attempt in ("a", "b"):
        await send(bus, book, msg_id=f"{book.tool_call_id}:{attempt}")
        await send(bus, pay, msg_id=f"{pay.tool_call_id}:{attempt}")
    await drained(bus)

    # The harder case: the provider call happened but its outcome was never saved (a crash).
    with psycopg.connect(tools_database, autocommit=True) as conn:
        conn.execute("DELETE FROM tools_calls WHERE tenant_id = %s", (tenant,))
    await send(bus, book, msg_id=f"{book.tool_call_id}:c")
    await send(bus, pay, msg_id=f"{pay.tool_call_id}:c")
    await drained(bus)
    done = await collected.wait_for(ToolCallCompleted, 2)

    # Republished outcomes keep their Msg-Id and event id: JetStream stored each once.
    assert sorted(d.tool_call_id for d in done) == sorted([book.tool_call_id, pay.tool_call_id])
    assert all(d.error is None for d in done)
    assert len(await caldav_tenant.busy(start, start + timedelta(hours=1))) == 1
    sessions = [
        s
        for s in stripe_standin[0].sessions.values()
        if s["metadata"].get("tool_call_id") == pay.tool_call_id
    ]
    assert len(sessions) == 1
    assert sessions[0]["metadata"]["conversation_id"] == "conv-1"
    links = {d.result["url"] for d in done if d.tool == "create_payment_link" and d.result}
    assert links == {sessions[0]["url"]}


async def test_bad_input_is_a_structured_error_and_the_consumer_goes_on(
    bus: Bus,
    api: httpx.AsyncClient,
    collected: Collected,
    caldav_tenant: CalDavCalendar,
    tenant: str,
    stripe_standin: tuple[StripeStandIn, str],
) -> None:
    await configure(
        api,
        tenant,
        stripe_url=stripe_standin[1],
        tools=("book_slot", "create_payment_link", "check_availability"),
    )
    monday = next_monday()
    cases = {
        "invalid_arguments": ("book_slot", {"start": f"{monday}T25:61:00"}),
        "slot_in_past": ("book_slot", {"start": "2020-01-06T10:00:00+01:00"}),
        "outside_opening_hours": ("book_slot", {"start": at(monday, 20).isoformat()}),
        "unknown_product": ("create_payment_link", {"product": "yacht"}),
        "tool_not_enabled": ("trigger_workflow", {"workflow": "crm"}),
        "unknown_tool": ("launch_rocket", {}),
    }
    negative = tool_call(tenant, "create_payment_link", {"amount_minor": -5, "currency": "eur"})
    calls = {code: tool_call(tenant, tool, args) for code, (tool, args) in cases.items()}

    for call in [*calls.values(), negative]:
        await send(bus, call)
    for code, call in calls.items():
        done = await completion(collected, call)
        assert done.error is not None and done.error.code == code, (code, done.error)
    negative_done = await completion(collected, negative)
    assert negative_done.error is not None
    assert negative_done.error.code == "invalid_arguments"
    assert "amount_minor" in negative_done.error.message

    fine = await send(bus, tool_call(tenant, "create_payment_link", {"amount_minor": 1500}))
    assert (await completion(collected, fine)).error is None


async def test_cancel_and_reschedule(
    bus: Bus, collected: Collected, caldav_tenant: CalDavCalendar, tenant: str
) -> None:
    day = next_monday(2)
    first = await send(bus, tool_call(tenant, "book_slot", {"start": at(day, 10).isoformat()}))
    booking = (await completion(collected, first)).result
    assert booking is not None

    moved = await send(
        bus,
        tool_call(
            tenant,
            "reschedule_booking",
            {"booking_id": booking["booking_id"], "start": at(day, 10, 30).isoformat()},
        ),
    )
    moved_done = await completion(collected, moved)
    assert moved_done.error is None and moved_done.result is not None
    new_id = moved_done.result["booking_id"]
    assert await caldav_tenant.find_event(booking["booking_id"]) is None
    assert await caldav_tenant.busy(at(day, 9), at(day, 12)) == [
        Interval(at(day, 10, 30), at(day, 11))
    ]

    other_lead = await send(
        bus, tool_call(tenant, "cancel_booking", {"booking_id": new_id}, conversation="other")
    )
    assert (await completion(collected, other_lead)).error.code == "unknown_booking"  # type: ignore[union-attr]

    cancel = await send(bus, tool_call(tenant, "cancel_booking", {"booking_id": new_id}))
    assert (await completion(collected, cancel)).result == {
        "booking_id": new_id,
        "status": "cancelled",
    }
    assert await caldav_tenant.busy(at(day, 9), at(day, 12)) == []
    cancelled = await collected.wait_for(BookingCancelled, 2)
    assert {c.replaced_by for c in cancelled} == {new_id, None}


async def test_google_calendar_transient_errors_are_retried_and_lasting_ones_reported(
    bus: Bus,
    api: httpx.AsyncClient,
    collected: Collected,
    tenant: str,
    google: tuple[GoogleStandIn, str],
) -> None:
    standin = google[0]
    standin.add_client("client-1", "secret-1", "1//refresh")
    calendar_id = f"{tenant}@group.calendar.google.com"
    await configure(api, tenant, calendar=google_connection(calendar_id))
    day = next_monday()

    standin.fail_next.extend([503, 503])
    first = await send(bus, tool_call(tenant, "book_slot", {"start": at(day, 11).isoformat()}))
    assert (await completion(collected, first)).error is None
    assert len(standin.events[calendar_id]) == 1

    standin.freebusy_errors.add(calendar_id)
    unknown = await send(bus, tool_call(tenant, "book_slot", {"start": at(day, 14).isoformat()}))
    failed = await completion(collected, unknown)
    assert failed.error is not None
    assert (failed.error.code, failed.error.retryable) == ("google_unavailable", True)
    assert len(standin.events[calendar_id]) == 1, "an unknown calendar is never taken as free"

    standin.freebusy_errors.discard(calendar_id)
    again = await send(bus, tool_call(tenant, "book_slot", {"start": at(day, 14).isoformat()}))
    assert (await completion(collected, again)).error is None, "the reservation was released"


async def test_a_workflow_is_triggered_with_its_auth(
    bus: Bus,
    api: httpx.AsyncClient,
    collected: Collected,
    tenant: str,
    receiver: tuple[Receiver, str],
) -> None:
    standin, url = receiver
    path = f"n8n-{uuid.uuid4().hex[:6]}"
    await configure(api, tenant)
    response = await api.put(
        f"/v1/tenants/{tenant}/tools/connections/workflows/crm",
        json={
            "provider": "webhook",
            "settings": {"url": f"{url}/{path}", "auth": "header", "header_name": "X-N8N-Key"},
            "secrets": {"secret": "n8n-header-secret"},
        },
    )
    assert response.status_code == 204

    call = await send(
        bus, tool_call(tenant, "trigger_workflow", {"workflow": "crm", "payload": {"x": 1}})
    )
    done = await completion(collected, call)

    assert done.error is None and done.result == {
        "status": 200,
        "response": {"ok": True, "path": path},
    }
    [got] = standin.on(path)
    assert got["headers"]["x-n8n-key"] == "n8n-header-secret"


async def test_secrets_never_reach_the_logs(
    bus: Bus,
    api: httpx.AsyncClient,
    collected: Collected,
    tenant: str,
    google: tuple[GoogleStandIn, str],
    stripe_standin: tuple[StripeStandIn, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    google[0].add_client("client-1", "secret-1", "1//refresh")
    calendar_id = f"{tenant}@group.calendar.google.com"
    await configure(
        api, tenant, calendar=google_connection(calendar_id), stripe_url=stripe_standin[1]
    )
    google[0].fail_next.append(503)  # a retry, logged
    stripe_standin[0].fail_next.extend([500] * 3)  # fails every attempt, logged
    day = next_monday(3)

    calls = [
        tool_call(tenant, "book_slot", {"start": at(day, 9).isoformat()}),
        tool_call(tenant, "create_payment_link", {"amount_minor": 100}),
    ]
    for call in calls:
        await send(bus, call)
    done = [await completion(collected, call) for call in calls]

    assert done[1].error is not None and done[1].error.code == "stripe_unavailable"
    assert stripe_standin[0].fail_next == []
    for secret in ("secret-1", "1//refresh", "sk_test_standin", "whsec_test_secret"):
        assert secret not in caplog.text
    assert "retrying" in caplog.text  # the logs did record the failures
