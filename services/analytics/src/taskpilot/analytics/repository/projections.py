"""Projections: every public event applied to the read models, once.

Idempotency is uniform: the first statement of every projection records the event id in
``analytics_projected``; when that row already exists the event was applied and nothing else
runs, so a redelivery (JetStream's, or a rebuild overlapping the live consumer) changes nothing.
Events of one stream are applied in stream order (ordered consumers); projections of different
streams touch different tables, so the interleaving of streams never changes the result.

The live projector takes a shared advisory lock per transaction and a rebuild the exclusive one, so
the two never interleave (see :mod:`taskpilot.analytics.rebuild`). Every change to a
conversation is announced with ``pg_notify`` inside the transaction, so listeners hear of it
only after commit.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from taskpilot.analytics.domain import NOTIFY_CHANNEL, Projectable, change_notice
from taskpilot.analytics.repository import conversations as conv
from taskpilot.analytics.repository import facts
from taskpilot.contracts import conversation as ev
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.contracts.tools import BookingCancelled, PaymentReceived, SlotBooked
from taskpilot.tenancy import tenant_transaction
from taskpilot.tenancy.rls import switch_tenant

PROJECTION_LOCK = 0x7A_6E_A1_71
"""Advisory lock key: shared by each live projection, exclusive during a rebuild."""

Projection = Callable[[AsyncConnection, Any], Awaitable[None]]


class ProjectionStore:
    def __init__(self, pool: AsyncConnectionPool):
        self._pool = pool

    async def apply(self, event: Projectable, *, live: bool = True) -> bool:
        """Apply one event; False when it had been applied before. ``live=False`` (rebuild):
        no lock (the rebuild holds it) and no notifications."""
        async with tenant_transaction(self._pool, event.tenant_id) as conn:
            if live:
                await _lock_shared(conn)
            return await self.apply_in(conn, event, live=live)

    async def apply_many(self, events: Sequence[Projectable]) -> list[bool]:
        """Apply live events in one transaction, tenant by tenant (each tenant's in the order
        given); for each, False when it had been applied before. All or none: a failure rolls
        back the whole batch."""
        if not events:
            return []
        by_tenant = sorted(range(len(events)), key=lambda i: events[i].tenant_id)  # stable
        applied = [False] * len(events)
        async with tenant_transaction(self._pool, events[by_tenant[0]].tenant_id) as conn:
            await _lock_shared(conn)
            tenant = events[by_tenant[0]].tenant_id
            for i in by_tenant:
                if events[i].tenant_id != tenant:
                    tenant = events[i].tenant_id
                    await switch_tenant(conn, tenant)
                applied[i] = await self.apply_in(conn, events[i], live=True)
        return applied

    async def apply_in(self, conn: AsyncConnection, event: Projectable, *, live: bool) -> bool:
        """Apply one event inside a tenant transaction the caller opened for its tenant (a
        live caller holds the projection lock shared, a rebuild exclusively)."""
        if not await _first_time(conn, event):
            return False
        await projection_of(event)(conn, event)
        if live and isinstance(event, ev.ConversationEvent | DeadLettered):
            await _announce(conn, event)
        return True


async def _lock_shared(conn: AsyncConnection) -> None:
    """Live projections hold the lock shared for their transaction; a rebuild waits for them."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (PROJECTION_LOCK,))


async def _first_time(conn: AsyncConnection, e: Projectable) -> bool:
    """Record the event as applied; False when it was, or when it belongs to a conversation
    erased after it happened (a late redelivery must not bring the lead back)."""
    erasable = isinstance(e, ev.ConversationEvent) and not isinstance(e, ev.LeadErased)
    conversation = getattr(e, "conversation_id", None)
    cur = await conn.execute(
        """INSERT INTO analytics_projected (tenant_id, event_id, conversation_id, type,
             occurred_at)
           SELECT %(tenant)s, %(id)s, %(conversation)s, %(type)s, %(at)s
           WHERE NOT EXISTS (SELECT 1 FROM analytics_erasures WHERE %(erasable)s
                             AND conversation_id = %(conversation)s AND erased_at >= %(at)s)
           ON CONFLICT DO NOTHING""",
        {
            "tenant": e.tenant_id,
            "id": e.event_id,
            "conversation": conversation,
            "type": e.type,
            "at": e.occurred_at,
            "erasable": erasable,
        },
    )
    return cur.rowcount == 1


async def _announce(conn: AsyncConnection, e: ev.ConversationEvent | DeadLettered) -> None:
    row = None
    if isinstance(e, ev.ConversationEvent) and not isinstance(e, ev.LeadErased):
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT * FROM analytics_conversations WHERE conversation_id = %s",
            (e.conversation_id,),
        )
        row = await cur.fetchone()
    await conn.execute(
        "SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, json.dumps(change_notice(e, row)))
    )


PROJECTIONS: dict[type, Projection] = {
    ev.LeadMessageReceived: conv.lead_message,
    ev.ReplyRequested: conv.only_recorded,
    ev.TurnSuperseded: conv.only_recorded,
    ev.ToolCallsRequested: conv.only_recorded,
    ev.ToolResultRecorded: conv.only_recorded,
    ev.TurnTimedOut: conv.only_recorded,
    ev.ReplyComposed: conv.reply_composed,
    ev.ReplySent: conv.reply_sent,
    ev.ReplyStatusChanged: conv.reply_status,
    ev.ReplyFailed: conv.reply_failed,
    ev.WindowClosed: conv.window_closed,
    ev.ConversationHandedOff: conv.handed_off,
    ev.HumanReplied: conv.human_replied,
    ev.BotResumed: conv.bot_resumed,
    ev.LeadErased: conv.lead_erased,
    ev.ConversationArchived: conv.lifecycle_fact,
    ev.ConversationRestored: conv.lifecycle_fact,
    ev.ConversationContentRedacted: conv.content_redacted,
    ev.RetentionApplied: conv.lifecycle_fact,
    ev.LifecycleRunFinished: conv.lifecycle_fact,
    SlotBooked: facts.slot_booked,
    BookingCancelled: facts.booking_cancelled,
    PaymentReceived: facts.payment_received,
    DeadLettered: facts.dead_lettered,
}
"""The routing table: which projection each public event goes through."""


def projection_of(event: Projectable) -> Projection:
    # A conversation event this version does not know yet is still recorded and counted.
    return PROJECTIONS.get(type(event), conv.only_recorded)
