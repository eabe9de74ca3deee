"""Projections of facts other services publish: bookings and payments (``tools.>``), dead
letters (``dlq.>``). They touch only their own tables, so their order relative to the
conversation stream never matters."""

from __future__ import annotations

import json

from psycopg import AsyncConnection

from taskpilot.contracts.dlq import DeadLettered
from taskpilot.contracts.tools import BookingCancelled, PaymentReceived, SlotBooked


async def slot_booked(conn: AsyncConnection, e: SlotBooked) -> None:
    await conn.execute(
        """INSERT INTO analytics_bookings (tenant_id, booking_id, conversation_id, starts_at,
             ends_at, timezone, calendar, booked_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (tenant_id, booking_id) DO UPDATE SET
             conversation_id = EXCLUDED.conversation_id, starts_at = EXCLUDED.starts_at,
             ends_at = EXCLUDED.ends_at, timezone = EXCLUDED.timezone,
             calendar = EXCLUDED.calendar, booked_at = EXCLUDED.booked_at""",
        (
            e.tenant_id,
            e.booking_id,
            e.conversation_id,
            e.start,
            e.end,
            e.timezone,
            e.calendar,
            e.occurred_at,
        ),
    )


async def booking_cancelled(conn: AsyncConnection, e: BookingCancelled) -> None:
    # A cancellation may be applied first (another stream order): it keeps its own row.
    await conn.execute(
        """INSERT INTO analytics_bookings (tenant_id, booking_id, conversation_id, cancelled_at,
             replaced_by) VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (tenant_id, booking_id) DO UPDATE SET
             cancelled_at = EXCLUDED.cancelled_at, replaced_by = EXCLUDED.replaced_by""",
        (e.tenant_id, e.booking_id, e.conversation_id, e.occurred_at, e.replaced_by),
    )


async def payment_received(conn: AsyncConnection, e: PaymentReceived) -> None:
    # One payment per checkout session, whatever number of provider events confirm it.
    await conn.execute(
        """INSERT INTO analytics_payments (tenant_id, checkout_session_id, provider_event_id,
             conversation_id, provider, amount_minor, currency, received_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
        (
            e.tenant_id,
            e.checkout_session_id,
            e.provider_event_id,
            e.conversation_id,
            e.provider,
            e.amount_minor,
            (e.currency or "").upper() or None,
            e.occurred_at,
        ),
    )


async def dead_lettered(conn: AsyncConnection, d: DeadLettered) -> None:
    await conn.execute(
        """INSERT INTO analytics_dead_letters (tenant_id, event_id, origin, reason, error,
             subject, stream, stream_seq, attempts, headers, payload, payload_encoding,
             correlation_id, trace_id, occurred_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            d.tenant_id,
            d.event_id,
            d.origin,
            d.reason,
            d.error,
            d.original_subject,
            d.stream,
            d.stream_seq,
            d.attempts,
            json.dumps(d.headers),
            d.payload,
            d.payload_encoding,
            d.correlation_id,
            d.trace_id,
            d.occurred_at,
        ),
    )
