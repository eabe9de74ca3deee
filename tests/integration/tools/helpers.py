"""Configuring a tenant through the tools HTTP API, and sending tool calls over NATS."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from taskpilot.contracts.tools import ExecuteToolCall
from taskpilot.runtime.bus import Bus
from taskpilot.tools.domain import KNOWN_TOOLS

ZONE = "Europe/Madrid"
POLICY = {
    "timezone": ZONE,
    "opening_hours": {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    "slot_minutes": 30,
    "buffer_before_minutes": 0,
    "buffer_after_minutes": 15,
    "lead_time_minutes": 60,
}
PRODUCTS = {"haircut": {"name": "Haircut", "amount_minor": 2500, "currency": "eur"}}
WEBHOOK_SECRET = "whsec_test_secret"


def next_monday(weeks: int = 1) -> date:
    today = datetime.now(UTC).date()
    return today + timedelta(days=7 - today.weekday() + 7 * (weeks - 1))


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time at the tenant's."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(ZONE))


async def configure(
    api: httpx.AsyncClient,
    tenant: str,
    *,
    calendar: dict[str, Any] | None = None,
    stripe_url: str | None = None,
    stripe_key: str = "sk_test_standin",
    tools: tuple[str, ...] = KNOWN_TOOLS,
    policy: dict[str, Any] | None = None,
) -> None:
    base = f"/v1/tenants/{tenant}/tools"
    response = await api.put(
        f"{base}/settings",
        json={"enabled_tools": list(tools), "booking_policy": policy or POLICY},
    )
    assert response.status_code == 204, response.text
    if calendar is not None:
        response = await api.put(f"{base}/connections/calendar", json=calendar)
        assert response.status_code == 204, response.text
    if stripe_url is not None:
        response = await api.put(
            f"{base}/connections/payments",
            json={
                "provider": "stripe",
                "settings": {
                    "currency": "eur",
                    "products": PRODUCTS,
                    "custom_amounts": {"min_minor": 100, "max_minor": 5000},
                },
                "secrets": {"api_key": stripe_key, "webhook_secret": WEBHOOK_SECRET},
            },
        )
        assert response.status_code == 204, response.text


def caldav_connection(calendar_url: str, user: str) -> dict[str, Any]:
    return {
        "provider": "caldav",
        "settings": {"url": calendar_url, "calendar_url": calendar_url, "username": user},
        "secrets": {"password": "caldav-password"},
    }


def google_connection(calendar_id: str) -> dict[str, Any]:
    return {
        "provider": "google",
        "settings": {"calendar_id": calendar_id, "client_id": "client-1"},
        "secrets": {"client_secret": "secret-1", "refresh_token": "1//refresh"},
    }


def tool_call(
    tenant: str,
    tool: str,
    arguments: dict[str, Any],
    *,
    conversation: str = "conv-1",
    call_id: str | None = None,
) -> ExecuteToolCall:
    return ExecuteToolCall(
        tenant_id=tenant,
        correlation_id=f"wamid.{uuid.uuid4().hex[:8]}",
        conversation_id=conversation,
        tool_call_id=call_id or f"turn#{uuid.uuid4().hex[:8]}#1",
        tool=tool,
        arguments=arguments,
    )


async def send(bus: Bus, call: ExecuteToolCall, msg_id: str | None = None) -> ExecuteToolCall:
    await bus.publish(call, msg_id=msg_id)
    return call
