"""Conversation I/O: the event store (eventsourcing's PostgreSQL persistence), the relay's
position and timers, and erasure of stored events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from taskpilot.runtime.db import migrate

if TYPE_CHECKING:
    from taskpilot.conversation.relay import TimerChange
    from taskpilot.conversation.service import Conversations


EVENT_STORE_CONNECTIONS = 12


def eventsourcing_env(database_url: str, schema: str = "public") -> dict[str, str]:
    url = urlsplit(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/") or "postgres",
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),  # must be set, empty is fine
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(EVENT_STORE_CONNECTIONS),
        "CREATE_TABLE": "y",
    }


def open_event_store(
    database_url: str, schema: str = "public", burst_window_s: float = 0.0
) -> Conversations:
    """Build the application; replicas starting together serialise its CREATE TABLEs."""
    from taskpilot.conversation.service import Conversations

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('taskpilot.conversation.store'))")
        try:
            return Conversations(
                env=eventsourcing_env(database_url, schema), burst_window_s=burst_window_s
            )
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('taskpilot.conversation.store'))")


def erase_stored_events(app: Conversations, database_url: str, aggregate_id: uuid.UUID) -> int:
    """Delete every stored event (and snapshot) of one aggregate. Returns events deleted.

    eventsourcing has no delete: this is the GDPR path, so it goes to the tables directly, in
    one transaction, under the same lock the library takes to keep its notification log
    consistent.
    """
    tables = [app.recorder.events_table_name]  # type: ignore[attr-defined]
    if app.snapshots is not None:
        tables.append(app.snapshots.recorder.events_table_name)  # type: ignore[attr-defined]
    deleted = 0
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(tables[0])))
        for table in tables:
            cur = conn.execute(
                sql.SQL("DELETE FROM {} WHERE originator_id = %s").format(sql.Identifier(table)),
                (aggregate_id,),
            )
            if table == tables[0]:
                deleted = cur.rowcount
    return deleted


TIMERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS relay_positions (
    name      text PRIMARY KEY,
    position  bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS conversation_timers (
    conversation_id  uuid NOT NULL,
    kind             text NOT NULL,
    key              text NOT NULL,
    due_at           timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, kind, key)
);
CREATE INDEX IF NOT EXISTS conversation_timers_due ON conversation_timers (due_at);
"""


class Timers:
    """The relay's position and the durable timers (turn deadlines, burst windows)."""

    def __init__(self, pool: AsyncConnectionPool):
        self._pool = pool

    async def ensure_schema(self) -> None:
        await migrate(self._pool, "taskpilot.conversation.timers", TIMERS_SCHEMA)

    async def position(self, name: str) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT position FROM relay_positions WHERE name = %s", (name,)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def apply(
        self, changes: list[tuple[uuid.UUID, TimerChange]], relay: str, position: int
    ) -> None:
        """Timer changes and the new relay position, in one transaction.

        Committed without waiting for the disk (``synchronous_commit = off``) and sent in one
        pipeline: the relay runs this after every batch, and waiting for an fsync each time
        held the next batch (the next GenerateReply) back by as long. Nothing is lost by it:
        should the server crash before the write reaches the disk, timers and position are
        lost together, and the relay, starting from the older position, publishes those events
        again (the Msg-Ids drop the copies) and derives the same timer changes. Any later
        durable commit (an event stored by a timer firing) flushes this one first."""
        async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            for conversation, change in changes:
                if change.due is None:
                    await conn.execute(
                        """DELETE FROM conversation_timers
                           WHERE conversation_id = %s AND kind = %s AND key = %s""",
                        (conversation, change.kind, change.key),
                    )
                else:
                    await conn.execute(
                        """INSERT INTO conversation_timers VALUES (%s, %s, %s, %s)
                           ON CONFLICT (conversation_id, kind, key)
                           DO UPDATE SET due_at = EXCLUDED.due_at""",
                        (conversation, change.kind, change.key, change.due),
                    )
            await conn.execute(
                """INSERT INTO relay_positions (name, position) VALUES (%s, %s)
                   ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position""",
                (relay, position),
            )

    async def due(self, limit: int = 100) -> list[tuple[uuid.UUID, str, str, datetime]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT conversation_id, kind, key, due_at FROM conversation_timers
                   WHERE due_at <= %s ORDER BY due_at LIMIT %s""",
                (datetime.now(UTC), limit),
            )
            rows: list[Any] = await cur.fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def next_due(self) -> datetime | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT min(due_at) FROM conversation_timers")
            row = await cur.fetchone()
        return row[0] if row else None

    async def cancel(self, conversation: uuid.UUID, kind: str, key: str, due: datetime) -> None:
        """Remove a fired timer, unless the relay moved it meanwhile."""
        async with self._pool.connection() as conn:
            await conn.execute(
                """DELETE FROM conversation_timers
                   WHERE conversation_id = %s AND kind = %s AND key = %s AND due_at = %s""",
                (conversation, kind, key, due),
            )

    async def forget(self, conversation: uuid.UUID) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "DELETE FROM conversation_timers WHERE conversation_id = %s", (conversation,)
            )
