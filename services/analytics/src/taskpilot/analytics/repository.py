"""Analytics read models in PostgreSQL, every table under row-level security by tenant.

Projections are idempotent: each row is keyed by the event that made it, and counters move
only when that row was new.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from taskpilot.contracts import conversation as events
from taskpilot.contracts.dlq import DeadLettered
from taskpilot.tenancy import tenant_transaction
from taskpilot.tenancy.rls import ensure_app_role_sql, tenant_table_sql

SCHEMA = (
    ensure_app_role_sql()
    + """
CREATE TABLE IF NOT EXISTS analytics_conversations (
    tenant_id         text NOT NULL,
    conversation_id   text NOT NULL,
    lead              text NOT NULL,
    lead_name         text,
    status            text NOT NULL DEFAULT 'bot',
    messages_in       integer NOT NULL DEFAULT 0,
    messages_out      integer NOT NULL DEFAULT 0,
    cost_usd          double precision NOT NULL DEFAULT 0,
    first_message_at  timestamptz,
    last_message_at   timestamptz,
    PRIMARY KEY (tenant_id, conversation_id)
);
CREATE INDEX IF NOT EXISTS analytics_conversations_recent
    ON analytics_conversations (tenant_id, last_message_at DESC);
CREATE TABLE IF NOT EXISTS analytics_messages (
    tenant_id         text NOT NULL,
    event_id          uuid NOT NULL,
    conversation_id   text NOT NULL,
    sequence          integer NOT NULL,
    direction         text NOT NULL,
    turn_id           text,
    kind              text,
    text              text,
    tier              text,
    source            text,
    intent            text,
    model             text,
    cost_usd          double precision NOT NULL DEFAULT 0,
    cache_hit         boolean NOT NULL DEFAULT false,
    citations         jsonb NOT NULL DEFAULT '[]'::jsonb,
    latency_ms        double precision,
    status            text NOT NULL,
    wamid             text,
    occurred_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX IF NOT EXISTS analytics_messages_conversation
    ON analytics_messages (tenant_id, conversation_id, sequence);
CREATE TABLE IF NOT EXISTS analytics_dead_letters (
    tenant_id    text NOT NULL,
    event_id     uuid NOT NULL,
    origin       text NOT NULL,
    reason       text NOT NULL,
    error        text NOT NULL,
    subject      text,
    attempts     integer NOT NULL,
    payload      text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
"""
    + "".join(
        tenant_table_sql(t)
        for t in ("analytics_conversations", "analytics_messages", "analytics_dead_letters")
    )
)


class AnalyticsRepository:
    def __init__(self, pool: AsyncConnectionPool):
        self._pool = pool

    # -- projections -------------------------------------------------------------------

    async def project(self, event: events.ConversationEvent) -> None:
        async with tenant_transaction(self._pool, event.tenant_id) as conn:
            if isinstance(event, events.LeadErased):
                await self._erase(conn, event)
                return
            await self._ensure_conversation(conn, event)
            if isinstance(event, events.LeadMessageReceived):
                await self._message_in(conn, event)
            elif isinstance(event, events.ReplyComposed):
                await self._message_out(conn, event)
            elif isinstance(event, events.ReplySent):
                await self._set_reply_status(conn, event, "sent", event.wamid)
            elif isinstance(event, events.ReplyFailed):
                await self._set_reply_status(conn, event, "failed", None)
            elif isinstance(event, events.ReplyStatusChanged):
                await self._set_reply_status(conn, event, event.status, event.wamid)
            elif isinstance(event, events.HumanReplied):
                await self._human_message(conn, event)
            elif isinstance(event, events.ConversationHandedOff):
                await self._set_status(conn, event, "human")
            elif isinstance(event, events.BotResumed):
                await self._set_status(conn, event, "bot")

    async def _set_status(
        self, conn: AsyncConnection, e: events.ConversationEvent, status: str
    ) -> None:
        await conn.execute(
            "UPDATE analytics_conversations SET status = %s WHERE conversation_id = %s",
            (status, e.conversation_id),
        )

    async def _erase(self, conn: AsyncConnection, e: events.LeadErased) -> None:
        for table in ("analytics_messages", "analytics_conversations"):
            await conn.execute(
                sql.SQL("DELETE FROM {} WHERE conversation_id = %s").format(sql.Identifier(table)),
                (e.conversation_id,),
            )

    async def _human_message(self, conn: AsyncConnection, e: events.HumanReplied) -> None:
        cur = await conn.execute(
            """INSERT INTO analytics_messages (tenant_id, event_id, conversation_id, sequence,
                 direction, turn_id, kind, text, tier, source, model, status, occurred_at)
               VALUES (%s, %s, %s, %s, 'out', %s, 'text', %s, 'human', 'human', %s,
                       'composed', %s) ON CONFLICT DO NOTHING""",
            (
                e.tenant_id,
                e.event_id,
                e.conversation_id,
                e.sequence,
                e.turn_id,
                e.text,
                e.agent,
                e.occurred_at,
            ),
        )
        if cur.rowcount:
            await conn.execute(
                """UPDATE analytics_conversations SET messages_out = messages_out + 1,
                     last_message_at = greatest(last_message_at, %s)
                   WHERE conversation_id = %s""",
                (e.occurred_at, e.conversation_id),
            )

    async def _ensure_conversation(
        self, conn: AsyncConnection, e: events.ConversationEvent
    ) -> None:
        await conn.execute(
            """INSERT INTO analytics_conversations (tenant_id, conversation_id, lead)
               VALUES (%s, %s, %s) ON CONFLICT DO NOTHING""",
            (e.tenant_id, e.conversation_id, e.lead),
        )

    async def _message_in(self, conn: AsyncConnection, e: events.LeadMessageReceived) -> None:
        cur = await conn.execute(
            """INSERT INTO analytics_messages (tenant_id, event_id, conversation_id, sequence,
                 direction, kind, text, status, wamid, occurred_at)
               VALUES (%s, %s, %s, %s, 'in', %s, %s, 'received', %s, %s) ON CONFLICT DO NOTHING""",
            (
                e.tenant_id,
                e.event_id,
                e.conversation_id,
                e.sequence,
                e.kind,
                e.text,
                e.wamid,
                e.occurred_at,
            ),
        )
        if cur.rowcount:
            await conn.execute(
                """UPDATE analytics_conversations SET messages_in = messages_in + 1,
                     lead_name = coalesce(%s, lead_name),
                     first_message_at = coalesce(first_message_at, %s),
                     last_message_at = greatest(last_message_at, %s)
                   WHERE conversation_id = %s""",
                (e.lead_name, e.occurred_at, e.occurred_at, e.conversation_id),
            )

    async def _message_out(self, conn: AsyncConnection, e: events.ReplyComposed) -> None:
        cur = await conn.execute(
            """INSERT INTO analytics_messages (tenant_id, event_id, conversation_id, sequence,
                 direction, turn_id, kind, text, tier, source, intent, model, cost_usd, cache_hit,
                 citations, latency_ms, status, occurred_at)
               VALUES (%s, %s, %s, %s, 'out', %s, 'text', %s, %s, %s, %s, %s, %s, %s, %s, %s,
                       %s, %s) ON CONFLICT DO NOTHING""",
            (
                e.tenant_id,
                e.event_id,
                e.conversation_id,
                e.sequence,
                e.turn_id,
                e.text,
                e.tier,
                e.source,
                e.intent,
                e.model,
                e.cost_usd,
                e.cache_hit,
                json.dumps([c.model_dump() for c in e.citations]),
                e.latency_ms,
                "composed" if e.text else "silent",
                e.occurred_at,
            ),
        )
        if cur.rowcount:
            await conn.execute(
                """UPDATE analytics_conversations SET messages_out = messages_out + %s,
                     cost_usd = cost_usd + %s, last_message_at = greatest(last_message_at, %s)
                   WHERE conversation_id = %s""",
                (1 if e.text else 0, e.cost_usd, e.occurred_at, e.conversation_id),
            )

    async def _set_reply_status(
        self, conn: AsyncConnection, e: events.ConversationEvent, status: str, wamid: str | None
    ) -> None:
        await conn.execute(
            """UPDATE analytics_messages SET status = %s, wamid = coalesce(%s, wamid)
               WHERE conversation_id = %s AND turn_id = %s AND direction = 'out'""",
            (status, wamid, e.conversation_id, getattr(e, "turn_id", None)),
        )

    async def record_dead_letter(self, letter: DeadLettered) -> None:
        async with tenant_transaction(self._pool, letter.tenant_id) as conn:
            await conn.execute(
                """INSERT INTO analytics_dead_letters (tenant_id, event_id, origin, reason, error,
                     subject, attempts, payload, occurred_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                (
                    letter.tenant_id,
                    letter.event_id,
                    letter.origin,
                    letter.reason,
                    letter.error,
                    letter.original_subject,
                    letter.attempts,
                    letter.payload,
                    letter.occurred_at,
                ),
            )

    # -- queries -----------------------------------------------------------------------

    async def conversations(
        self, tenant_id: str, limit: int, offset: int, status: str | None
    ) -> list[dict[str, Any]]:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """SELECT * FROM analytics_conversations
                   WHERE (%s::text IS NULL OR status = %s)
                   ORDER BY last_message_at DESC NULLS LAST LIMIT %s OFFSET %s""",
                (status, status, limit, offset),
            )
            return await cur.fetchall()

    async def conversation(self, tenant_id: str, conversation_id: str) -> dict[str, Any] | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT * FROM analytics_conversations WHERE conversation_id = %s",
                (conversation_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            await cur.execute(
                """SELECT event_id, sequence, direction, turn_id, kind, text, tier, source, intent,
                          model, cost_usd, cache_hit, citations, latency_ms, status, wamid,
                          occurred_at
                   FROM analytics_messages WHERE conversation_id = %s ORDER BY sequence""",
                (conversation_id,),
            )
            row["messages"] = await cur.fetchall()
            return row

    async def dead_letters(self, tenant_id: str, limit: int, offset: int) -> list[dict[str, Any]]:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """SELECT * FROM analytics_dead_letters ORDER BY occurred_at DESC
                   LIMIT %s OFFSET %s""",
                (limit, offset),
            )
            return await cur.fetchall()
