"""Projections of the conversation service's public events (``conversation.>``).

Each runs inside the tenant transaction of :class:`ProjectionStore`, after the event was
recorded as applied for the first time.
"""

# ruff: noqa: S608  (queries are assembled from constant fragments; values are parameters)

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection

from taskpilot.contracts import conversation as ev

STATUS_RANK = (
    "CASE status WHEN 'read' THEN 3 WHEN 'played' THEN 3 WHEN 'delivered' THEN 2 "
    "WHEN 'sent' THEN 1 ELSE 0 END"
)
HANDOFF_BY = ("assistant", "system")
CONVERSATION_TYPES = [t.TYPE for t in ev.CONVERSATION_EVENTS]
REDACTED = "[redacted]"
"""What retention leaves of a text (the conversation service writes the same marker)."""


async def _conversation(conn: AsyncConnection, e: ev.ConversationEvent) -> None:
    """The conversation's row exists, and shows this event as its latest activity."""
    await conn.execute(
        """INSERT INTO analytics_conversations (tenant_id, conversation_id, lead, updated_at)
           VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, conversation_id)
           DO UPDATE SET updated_at = greatest(analytics_conversations.updated_at,
                                               EXCLUDED.updated_at)""",
        (e.tenant_id, e.conversation_id, e.lead, e.occurred_at),
    )


async def lead_message(conn: AsyncConnection, e: ev.LeadMessageReceived) -> None:
    await _conversation(conn, e)
    await conn.execute(
        """INSERT INTO analytics_messages (tenant_id, event_id, conversation_id, sequence,
             direction, kind, text, status, wamid, occurred_at)
           VALUES (%s, %s, %s, %s, 'in', %s, %s, 'received', %s, %s)""",
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
    await conn.execute(
        """UPDATE analytics_conversations SET messages_in = messages_in + 1,
             lead_name = coalesce(%(name)s, lead_name),
             first_message_at = least(first_message_at, %(at)s),
             last_message_at = greatest(last_message_at, %(at)s),
             last_in_at = greatest(last_in_at, %(at)s),
             waiting_since = coalesce(waiting_since, %(at)s),
             window_closed = false,
             last_text = %(text)s, last_direction = 'in'
           WHERE conversation_id = %(id)s""",
        {
            "name": e.lead_name,
            "at": e.occurred_at,
            "text": _preview(e.text or f"[{e.kind}]"),
            "id": e.conversation_id,
        },
    )


async def reply_composed(conn: AsyncConnection, e: ev.ReplyComposed) -> None:
    await _conversation(conn, e)
    answered = await _stop_waiting(conn, e.conversation_id)
    await conn.execute(
        """INSERT INTO analytics_messages (tenant_id, event_id, conversation_id, sequence,
             direction, turn_id, kind, text, tier, source, intent, model, prompt_tokens,
             completion_tokens, cost_usd, cache_hit, citations, latency_ms, status,
             awaited_since, occurred_at)
           VALUES (%s, %s, %s, %s, 'out', %s, 'text', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                   %s, %s, %s, %s)""",
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
            e.prompt_tokens,
            e.completion_tokens,
            e.cost_usd,
            e.cache_hit,
            json.dumps([c.model_dump() for c in e.citations]),
            e.latency_ms,
            "composed" if e.text else "silent",
            answered,
            e.occurred_at,
        ),
    )
    spoke = 1 if e.text else 0
    await conn.execute(
        """UPDATE analytics_conversations SET messages_out = messages_out + %(n)s,
             bot_replies = bot_replies + %(n)s, cost_usd = cost_usd + %(cost)s,
             last_message_at = greatest(last_message_at, %(at)s),
             last_text = coalesce(%(text)s, last_text),
             last_direction = CASE WHEN %(n)s = 1 THEN 'out' ELSE last_direction END
           WHERE conversation_id = %(id)s""",
        {
            "n": spoke,
            "cost": e.cost_usd,
            "at": e.occurred_at,
            "text": _preview(e.text),
            "id": e.conversation_id,
        },
    )


async def human_replied(conn: AsyncConnection, e: ev.HumanReplied) -> None:
    await _conversation(conn, e)
    answered = await _stop_waiting(conn, e.conversation_id)
    await conn.execute(
        """INSERT INTO analytics_messages (tenant_id, event_id, conversation_id, sequence,
             direction, turn_id, kind, text, tier, source, model, agent, status, awaited_since,
             occurred_at)
           VALUES (%s, %s, %s, %s, 'out', %s, 'text', %s, 'human', 'human', 'human', %s,
                   'composed', %s, %s)""",
        (
            e.tenant_id,
            e.event_id,
            e.conversation_id,
            e.sequence,
            e.turn_id,
            e.text,
            e.agent,
            answered,
            e.occurred_at,
        ),
    )
    await conn.execute(
        """UPDATE analytics_conversations SET messages_out = messages_out + 1,
             human_replies = human_replies + 1,
             last_message_at = greatest(last_message_at, %(at)s),
             last_text = %(text)s, last_direction = 'out'
           WHERE conversation_id = %(id)s""",
        {"at": e.occurred_at, "text": _preview(e.text), "id": e.conversation_id},
    )


async def _stop_waiting(conn: AsyncConnection, conversation_id: str) -> Any:
    """The time the lead started waiting for this answer; the lead waits no more."""
    cur = await conn.execute(
        "SELECT waiting_since FROM analytics_conversations WHERE conversation_id = %s",
        (conversation_id,),
    )
    row = await cur.fetchone()
    await conn.execute(
        "UPDATE analytics_conversations SET waiting_since = NULL WHERE conversation_id = %s",
        (conversation_id,),
    )
    return row[0] if row else None


async def reply_sent(conn: AsyncConnection, e: ev.ReplySent) -> None:
    await _conversation(conn, e)
    cur = await conn.execute(
        """UPDATE analytics_messages SET wamid = %(wamid)s, sent_at = %(at)s,
             reply_ms = extract(epoch FROM (%(at)s - awaited_since)) * 1000,
             status = CASE WHEN """
        + STATUS_RANK
        + """ < 1 AND status <> 'failed'
                           THEN 'sent' ELSE status END
           WHERE conversation_id = %(id)s AND turn_id = %(turn)s AND direction = 'out'
           RETURNING reply_ms""",
        {"wamid": e.wamid, "at": e.occurred_at, "id": e.conversation_id, "turn": e.turn_id},
    )
    row = await cur.fetchone()
    if row is not None and row[0] is not None:
        await conn.execute(
            """UPDATE analytics_conversations
               SET first_response_ms = coalesce(first_response_ms, %s)
               WHERE conversation_id = %s""",
            (row[0], e.conversation_id),
        )


async def reply_status(conn: AsyncConnection, e: ev.ReplyStatusChanged) -> None:
    await _conversation(conn, e)
    # Meta may report "read" before "delivered": a status only ever moves up.
    await conn.execute(
        """UPDATE analytics_messages SET status = %(status)s, wamid = coalesce(wamid, %(wamid)s)
           WHERE conversation_id = %(id)s AND turn_id = %(turn)s AND direction = 'out'
             AND status <> 'failed' AND """
        + STATUS_RANK
        + """ < %(rank)s""",
        {
            "status": e.status,
            "wamid": e.wamid,
            "id": e.conversation_id,
            "turn": e.turn_id,
            "rank": {"delivered": 2, "read": 3, "played": 3}[e.status],
        },
    )


async def reply_failed(conn: AsyncConnection, e: ev.ReplyFailed) -> None:
    await _conversation(conn, e)
    await conn.execute(
        """UPDATE analytics_messages SET status = 'failed', failure = %s
           WHERE conversation_id = %s AND turn_id = %s AND direction = 'out'""",
        (f"{e.reason}" + (f" ({e.code})" if e.code else ""), e.conversation_id, e.turn_id),
    )


async def window_closed(conn: AsyncConnection, e: ev.WindowClosed) -> None:
    await _conversation(conn, e)
    await conn.execute(
        "UPDATE analytics_conversations SET window_closed = true WHERE conversation_id = %s",
        (e.conversation_id,),
    )


async def handed_off(conn: AsyncConnection, e: ev.ConversationHandedOff) -> None:
    # The assistant (or the system) handing off is a handoff; a person taking the
    # conversation of their own accord is a takeover. Both put a human in charge.
    await _conversation(conn, e)
    by_assistant = e.by in HANDOFF_BY
    await conn.execute(
        """UPDATE analytics_conversations SET status = 'human',
             handoffs = handoffs + %(handoff)s, takeovers = takeovers + 1 - %(handoff)s,
             handoff_reason = CASE WHEN %(handoff)s = 1 THEN %(reason)s ELSE handoff_reason END
           WHERE conversation_id = %(id)s""",
        {"handoff": int(by_assistant), "reason": e.reason, "id": e.conversation_id},
    )


async def bot_resumed(conn: AsyncConnection, e: ev.BotResumed) -> None:
    await _conversation(conn, e)
    await conn.execute(
        "UPDATE analytics_conversations SET status = 'bot' WHERE conversation_id = %s",
        (e.conversation_id,),
    )


async def only_recorded(conn: AsyncConnection, e: ev.ConversationEvent) -> None:
    # Turn mechanics (requested, superseded, tool rounds, timeouts) are counted from
    # analytics_projected; the conversation row only has to exist.
    await _conversation(conn, e)


async def lifecycle_fact(conn: AsyncConnection, e: ev.ConversationEvent) -> None:
    """Archived, restored, a retention or lifecycle run: counted in ``analytics_projected``
    only. Moving a conversation between the hot store and the archive is not activity (its
    row, its messages and every total stay as they were), and tenant-wide runs are no
    conversation at all."""


async def content_redacted(conn: AsyncConnection, e: ev.ConversationContentRedacted) -> None:
    """Retention: what people wrote goes from the read models too, up to ``before``; every
    figure stays (a redacted text is a marker, never NULL, so replies are still counted)."""
    await conn.execute(
        """UPDATE analytics_messages SET text = %s, citations = '[]'::jsonb
           WHERE conversation_id = %s AND occurred_at < %s AND text IS NOT NULL""",
        (REDACTED, e.conversation_id, e.before),
    )
    await conn.execute(
        """UPDATE analytics_conversations SET lead_name = NULL,
             last_text = CASE WHEN last_text IS NULL THEN NULL ELSE %s END
           WHERE conversation_id = %s AND last_message_at < %s""",
        (REDACTED, e.conversation_id, e.before),
    )


async def lead_erased(conn: AsyncConnection, e: ev.LeadErased) -> None:
    # Bookings and payments stay: they are the business's own records and carry no lead data
    # but the conversation id (a hash), and erasing them would make a rebuild depend on the
    # order in which the CONVERSATION and TOOLS streams are replayed.
    conv = e.conversation_id
    await conn.execute(
        """INSERT INTO analytics_erasures (tenant_id, conversation_id, erased_at)
           VALUES (%s, %s, %s) ON CONFLICT (tenant_id, conversation_id)
           DO UPDATE SET erased_at = greatest(analytics_erasures.erased_at,
                                              EXCLUDED.erased_at)""",
        (e.tenant_id, conv, e.occurred_at),
    )
    await conn.execute("DELETE FROM analytics_messages WHERE conversation_id = %s", (conv,))
    await conn.execute("DELETE FROM analytics_conversations WHERE conversation_id = %s", (conv,))
    await conn.execute(
        """DELETE FROM analytics_projected
           WHERE conversation_id = %s AND event_id <> %s AND type = ANY(%s)""",
        (conv, e.event_id, CONVERSATION_TYPES),
    )


def _preview(text: str | None) -> str | None:
    return None if text is None else text[:200]
