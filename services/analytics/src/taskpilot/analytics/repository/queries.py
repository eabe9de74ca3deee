"""Dashboard queries, on the read pool (a replica when ``read_database_url`` is set).

Every query runs in :func:`tenant_transaction`: row-level security confines it to one tenant,
so no query here names a tenant in its WHERE clause.
"""

# ruff: noqa: S608  (queries are assembled from constant fragments; values are parameters)

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from taskpilot.analytics.domain import CLOSED_AFTER_HOURS
from taskpilot.tenancy import tenant_transaction

CLOSED = f"(c.window_closed OR c.last_in_at < now() - interval '{CLOSED_AFTER_HOURS} hours')"
EFFECTIVE_STATUS = f"CASE WHEN {CLOSED} THEN 'closed' ELSE c.status END"
CONVERSATION_COLUMNS = f"""c.conversation_id, c.lead, c.lead_name, {EFFECTIVE_STATUS} AS status,
    c.status AS mode, c.messages_in, c.messages_out, c.bot_replies, c.human_replies, c.cost_usd,
    c.first_message_at, c.last_message_at, c.last_in_at, c.first_response_ms,
    c.handoffs, c.takeovers,
    c.handoff_reason, c.window_closed, c.last_text, c.last_direction, c.updated_at,
    c.waiting_since"""
MESSAGE_COLUMNS = """event_id, sequence, direction, turn_id, kind, text, tier, source, intent,
    model, agent, prompt_tokens, completion_tokens, cost_usd, cache_hit, citations, latency_ms,
    status, failure, wamid, awaited_since, sent_at, reply_ms, occurred_at"""


@dataclass(frozen=True)
class ConversationFilter:
    status: str | None = None  # bot | human | closed
    q: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    handed_off: bool | None = None
    after: tuple[datetime, str] | None = None  # keyset cursor: (updated_at, conversation_id)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _conversation_where(f: ConversationFilter) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = ["true"]
    params: dict[str, Any] = {}
    if f.status == "closed":
        clauses.append(CLOSED)
    elif f.status is not None:
        clauses.append(f"c.status = %(status)s AND NOT {CLOSED}")
        params["status"] = f.status
    if f.q:
        clauses.append(
            """(c.lead ILIKE %(q)s OR c.lead_name ILIKE %(q)s OR EXISTS (
                 SELECT 1 FROM analytics_messages m
                 WHERE m.conversation_id = c.conversation_id AND m.text ILIKE %(q)s))"""
        )
        params["q"] = _like(f.q)
    if f.since is not None:
        clauses.append("c.updated_at >= %(since)s")
        params["since"] = f.since
    if f.until is not None:
        clauses.append("c.updated_at < %(until)s")
        params["until"] = f.until
    if f.handed_off is not None:
        clauses.append("(c.handoffs > 0) = %(handed_off)s")
        params["handed_off"] = f.handed_off
    if f.after is not None:
        clauses.append("(c.updated_at, c.conversation_id) < (%(after_at)s, %(after_id)s)")
        params["after_at"], params["after_id"] = f.after
    return " AND ".join(clauses), params


class ReadModels:
    def __init__(self, pool: AsyncConnectionPool):
        self._pool = pool

    async def _all(self, tenant_id: str, query: Any, params: Any = None) -> list[dict[str, Any]]:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            return await _rows(conn, query, params)

    # -- conversations ---------------------------------------------------------------------

    async def conversations(
        self, tenant_id: str, f: ConversationFilter, limit: int
    ) -> list[dict[str, Any]]:
        where, params = _conversation_where(f)
        return await self._all(
            tenant_id,
            f"""SELECT {CONVERSATION_COLUMNS} FROM analytics_conversations c WHERE {where}
                ORDER BY c.updated_at DESC, c.conversation_id DESC LIMIT %(limit)s""",
            {**params, "limit": limit},
        )

    async def conversation(self, tenant_id: str, conversation_id: str) -> dict[str, Any] | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            rows = await _rows(
                conn,
                f"""SELECT {CONVERSATION_COLUMNS} FROM analytics_conversations c
                    WHERE c.conversation_id = %s""",
                (conversation_id,),
            )
            if not rows:
                return None
            conversation = rows[0]
            conversation["messages"] = await _rows(
                conn,
                f"""SELECT {MESSAGE_COLUMNS} FROM analytics_messages
                    WHERE conversation_id = %s ORDER BY sequence""",
                (conversation_id,),
            )
            conversation["bookings"] = await _rows(
                conn,
                """SELECT booking_id, starts_at, ends_at, timezone, calendar, booked_at,
                          cancelled_at, replaced_by
                   FROM analytics_bookings WHERE conversation_id = %s ORDER BY booked_at""",
                (conversation_id,),
            )
            conversation["payments"] = await _rows(
                conn,
                """SELECT checkout_session_id, provider, amount_minor, currency, received_at
                   FROM analytics_payments WHERE conversation_id = %s ORDER BY received_at""",
                (conversation_id,),
            )
            return conversation

    async def export(self, tenant_id: str, f: ConversationFilter) -> list[dict[str, Any]]:
        where, params = _conversation_where(f)
        return await self._all(
            tenant_id,
            f"""SELECT {CONVERSATION_COLUMNS} FROM analytics_conversations c WHERE {where}
                ORDER BY c.updated_at DESC, c.conversation_id DESC""",
            params,
        )

    # -- figures ---------------------------------------------------------------------------

    async def summary(self, tenant_id: str, since: datetime, until: datetime) -> dict[str, Any]:
        period = {"since": since, "until": until}
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cohort = (await _rows(conn, COHORT, period))[0]
            replies = (await _rows(conn, REPLIES, period))[0]
            tiers = await _rows(conn, TIERS, period)
            statuses = await _rows(
                conn,
                f"SELECT {EFFECTIVE_STATUS} AS status, count(*) AS n "
                "FROM analytics_conversations c GROUP BY 1",
            )
            bookings = (await _rows(conn, BOOKINGS, period))[0]
            revenue = await _rows(conn, REVENUE, period)
            events = await _rows(conn, EVENT_COUNTS, period)
            letters = await _rows(conn, DEAD_LETTER_COUNTS)
        return {
            "cohort": cohort,
            "replies": replies,
            "tiers": tiers,
            "statuses": {r["status"]: r["n"] for r in statuses},
            "bookings": bookings,
            "revenue": revenue,
            "events": {r["type"]: r["n"] for r in events},
            "dead_letters": letters,
        }

    async def timeseries(
        self, tenant_id: str, since: datetime, until: datetime, bucket: str, tz: str
    ) -> dict[str, list[dict[str, Any]]]:
        params = {"since": since, "until": until, "bucket": bucket, "tz": tz}
        async with tenant_transaction(self._pool, tenant_id) as conn:
            return {
                "messages": await _rows(conn, SERIES_MESSAGES, params),
                "tiers": await _rows(conn, SERIES_TIERS, params),
                "conversations": await _rows(conn, SERIES_CONVERSATIONS, params),
                "handoffs": await _rows(conn, SERIES_HANDOFFS, params),
                "bookings": await _rows(conn, SERIES_BOOKINGS, params),
                "revenue": await _rows(conn, SERIES_REVENUE, params),
            }

    async def month_spend(self, tenant_id: str, month_start: datetime) -> float:
        rows = await self._all(
            tenant_id,
            """SELECT coalesce(sum(cost_usd), 0) AS usd FROM analytics_messages
               WHERE occurred_at >= %s AND direction = 'out'""",
            (month_start,),
        )
        return float(rows[0]["usd"])

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letters(
        self,
        tenant_id: str,
        status: str,
        reason: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        return await self._all(
            tenant_id,
            f"""SELECT * FROM ({DEAD_LETTERS}) d
                WHERE (%(status)s = 'all' OR d.status = %(status)s)
                  AND (%(reason)s::text IS NULL OR d.reason = %(reason)s)
                  AND (%(after_at)s::timestamptz IS NULL
                       OR (d.occurred_at, d.id::text) < (%(after_at)s, %(after_id)s))
                ORDER BY d.occurred_at DESC, d.id::text DESC LIMIT %(limit)s""",
            {
                "status": status,
                "reason": reason,
                "after_at": after[0] if after else None,
                "after_id": after[1] if after else None,
                "limit": limit,
            },
        )

    async def dead_letter(self, tenant_id: str, letter_id: str) -> dict[str, Any] | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            rows = await _rows(
                conn, f"SELECT * FROM ({DEAD_LETTERS}) d WHERE d.id = %s", (letter_id,)
            )
            if not rows:
                return None
            rows[0]["actions"] = await _rows(
                conn,
                """SELECT action, actor, msg_id, at FROM analytics_dead_letter_actions
                   WHERE dead_letter_id = %s ORDER BY at""",
                (letter_id,),
            )
            return rows[0]


async def _rows(conn: AsyncConnection, query: Any, params: Any = None) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(query, params)
    return await cur.fetchall()


PCT = "percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY {})"

COHORT = f"""
SELECT count(*) AS conversations,
       count(*) FILTER (WHERE handoffs > 0) AS handed_off,
       count(*) FILTER (WHERE takeovers > 0) AS taken_over,
       count(*) FILTER (WHERE handoffs = 0 AND takeovers = 0 AND bot_replies > 0) AS resolved,
       {PCT.format("first_response_ms")} AS first_response_ms
FROM analytics_conversations
WHERE first_message_at >= %(since)s AND first_message_at < %(until)s"""

REPLIES = f"""
SELECT count(*) FILTER (WHERE direction = 'in') AS messages_in,
       count(*) FILTER (WHERE direction = 'out' AND tier <> 'human') AS bot_answers,
       count(*) FILTER (WHERE direction = 'out' AND tier <> 'human' AND text IS NOT NULL)
           AS bot_replies,
       count(*) FILTER (WHERE tier = 'human') AS human_replies,
       count(*) FILTER (WHERE cache_hit) AS cache_hits,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       coalesce(sum(cost_usd), 0) AS cost_usd,
       coalesce(sum(prompt_tokens + completion_tokens), 0) AS tokens,
       {PCT.format("reply_ms")} AS reply_ms,
       {PCT.format("reply_ms")} FILTER (WHERE tier <> 'human') AS bot_reply_ms,
       {PCT.format("reply_ms")} FILTER (WHERE tier = 'human') AS human_reply_ms
FROM analytics_messages
WHERE occurred_at >= %(since)s AND occurred_at < %(until)s"""

TIERS = """
SELECT tier, count(*) AS replies, coalesce(sum(cost_usd), 0) AS cost_usd,
       count(*) FILTER (WHERE cache_hit) AS cache_hits, avg(latency_ms) AS avg_latency_ms,
       coalesce(sum(prompt_tokens + completion_tokens), 0) AS tokens
FROM analytics_messages
WHERE direction = 'out' AND occurred_at >= %(since)s AND occurred_at < %(until)s
GROUP BY tier ORDER BY tier"""

BOOKINGS = """
SELECT count(*) FILTER (WHERE booked_at IS NOT NULL) AS bookings,
       count(*) FILTER (WHERE booked_at IS NOT NULL AND cancelled_at IS NULL) AS active,
       count(*) FILTER (WHERE cancelled_at IS NOT NULL) AS cancelled
FROM analytics_bookings
WHERE coalesce(booked_at, cancelled_at) >= %(since)s
  AND coalesce(booked_at, cancelled_at) < %(until)s"""

REVENUE = """
SELECT currency, count(*) AS payments, coalesce(sum(amount_minor), 0)::bigint AS amount_minor
FROM analytics_payments WHERE received_at >= %(since)s AND received_at < %(until)s
GROUP BY currency ORDER BY currency"""

EVENT_COUNTS = """
SELECT type, count(*) AS n FROM analytics_projected
WHERE occurred_at >= %(since)s AND occurred_at < %(until)s
  AND type IN ('ConversationHandedOff', 'TurnTimedOut', 'ToolCallsRequested', 'TurnSuperseded',
               'ReplyFailed', 'WindowClosed', 'BotResumed', 'LeadErased')
GROUP BY type"""

DEAD_LETTERS = """
SELECT l.event_id AS id, l.origin, l.reason, l.error, l.subject, l.stream, l.stream_seq,
       l.attempts, l.headers, l.payload, l.payload_encoding, l.correlation_id, l.trace_id,
       l.occurred_at,
       coalesce(a.action, 'open') AS status, a.at AS status_at, a.actor AS status_by,
       coalesce(r.replays, 0) AS replays
FROM analytics_dead_letters l
LEFT JOIN LATERAL (
    SELECT CASE action WHEN 'discarded' THEN 'discarded' ELSE 'replayed' END AS action, at, actor
    FROM analytics_dead_letter_actions x WHERE x.dead_letter_id = l.event_id
    ORDER BY at DESC LIMIT 1) a ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS replays FROM analytics_dead_letter_actions x
    WHERE x.dead_letter_id = l.event_id AND x.action = 'replayed') r ON true"""

DEAD_LETTER_COUNTS = f"""
SELECT status, reason, count(*) AS n FROM ({DEAD_LETTERS}) d GROUP BY status, reason
ORDER BY status, reason"""

BUCKET = "date_trunc(%(bucket)s, {} AT TIME ZONE %(tz)s)"

SERIES_MESSAGES = f"""
SELECT {BUCKET.format("occurred_at")} AS at,
       count(*) FILTER (WHERE direction = 'in') AS messages_in,
       count(*) FILTER (WHERE direction = 'out' AND tier <> 'human' AND text IS NOT NULL)
           AS bot_replies,
       count(*) FILTER (WHERE tier = 'human') AS human_replies,
       count(*) FILTER (WHERE cache_hit) AS cache_hits,
       coalesce(sum(cost_usd), 0) AS cost_usd,
       {PCT.format("reply_ms")} AS reply_ms
FROM analytics_messages WHERE occurred_at >= %(since)s AND occurred_at < %(until)s
GROUP BY 1 ORDER BY 1"""

SERIES_TIERS = f"""
SELECT {BUCKET.format("occurred_at")} AS at, tier, count(*) AS replies,
       coalesce(sum(cost_usd), 0) AS cost_usd
FROM analytics_messages
WHERE direction = 'out' AND occurred_at >= %(since)s AND occurred_at < %(until)s
GROUP BY 1, 2 ORDER BY 1, 2"""

SERIES_CONVERSATIONS = f"""
SELECT {BUCKET.format("first_message_at")} AS at, count(*) AS started,
       count(*) FILTER (WHERE handoffs = 0 AND takeovers = 0 AND bot_replies > 0) AS resolved,
       {PCT.format("first_response_ms")} AS first_response_ms
FROM analytics_conversations
WHERE first_message_at >= %(since)s AND first_message_at < %(until)s
GROUP BY 1 ORDER BY 1"""

SERIES_HANDOFFS = f"""
SELECT {BUCKET.format("occurred_at")} AS at, count(*) AS handoffs FROM analytics_projected
WHERE type = 'ConversationHandedOff' AND occurred_at >= %(since)s AND occurred_at < %(until)s
GROUP BY 1 ORDER BY 1"""

SERIES_BOOKINGS = f"""
SELECT {BUCKET.format("booked_at")} AS at, count(*) AS bookings FROM analytics_bookings
WHERE booked_at >= %(since)s AND booked_at < %(until)s GROUP BY 1 ORDER BY 1"""

SERIES_REVENUE = f"""
SELECT {BUCKET.format("received_at")} AS at, currency, coalesce(sum(amount_minor), 0)::bigint
       AS amount_minor, count(*) AS payments
FROM analytics_payments WHERE received_at >= %(since)s AND received_at < %(until)s
GROUP BY 1, 2 ORDER BY 1, 2"""
