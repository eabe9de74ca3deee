"""Lifecycle I/O in PostgreSQL: where each conversation lives, archive jobs and their items,
retention runs, and the moves of stored events between the hot store and the archive.

``lifecycle_catalog`` is the authority on where a conversation is (``hot`` or ``archived``).
Moving events out (delete) or back (insert) and flipping the catalog happen in one
transaction under the event store's own table lock, so no reader or writer ever sees a
conversation in both places or in none, whatever is killed when.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from taskpilot.conversation.archive import StoredRow
from taskpilot.runtime.db import migrate

SCHEMA = """
CREATE TABLE IF NOT EXISTS lifecycle_catalog (
    conversation_id       uuid PRIMARY KEY,
    tenant_id             text NOT NULL,
    lead                  text NOT NULL,
    last_event_at         timestamptz NOT NULL,
    last_notification_id  bigint NOT NULL,
    location              text NOT NULL DEFAULT 'hot' CHECK (location IN ('hot', 'archived')),
    archive_key           text,
    archive_sha256        text,
    archived_version      bigint,
    archived_at           timestamptz,
    restored_at           timestamptz,
    redacted_before       timestamptz
);
CREATE INDEX IF NOT EXISTS lifecycle_catalog_idle
    ON lifecycle_catalog (tenant_id, location, last_event_at);
CREATE TABLE IF NOT EXISTS lifecycle_positions (
    name      text PRIMARY KEY,
    position  bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS archive_jobs (
    id           uuid PRIMARY KEY,
    tenant_id    text NOT NULL,
    cutoff       timestamptz NOT NULL,
    state        text NOT NULL,  -- running | finished
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE TABLE IF NOT EXISTS archive_items (
    job_id           uuid NOT NULL REFERENCES archive_jobs(id) ON DELETE CASCADE,
    conversation_id  uuid NOT NULL,
    state            text NOT NULL,  -- selected | written | archived | skipped
    version          bigint,
    archive_key      text,
    sha256           text,
    events           integer,
    counts           jsonb,
    reason           text,
    announced        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (job_id, conversation_id)
);
CREATE INDEX IF NOT EXISTS archive_items_state ON archive_items (job_id, state);
CREATE TABLE IF NOT EXISTS retention_runs (
    id                      uuid PRIMARY KEY,
    tenant_id               text NOT NULL,
    rules                   jsonb NOT NULL,
    cutoff                  timestamptz NOT NULL,
    conversations_redacted  integer NOT NULL,
    events_redacted         integer NOT NULL,
    archives_rewritten      integer NOT NULL,
    ran_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS lifecycle_runs (
    id           uuid PRIMARY KEY,
    schedule     text NOT NULL,
    replica      text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    tenants      integer NOT NULL DEFAULT 0,
    archived     integer NOT NULL DEFAULT 0,
    redacted     integer NOT NULL DEFAULT 0,
    failures     integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS lifecycle_runs_latest ON lifecycle_runs (schedule, started_at DESC);
"""


@dataclass(frozen=True)
class CatalogEntry:
    conversation_id: uuid.UUID
    tenant_id: str
    lead: str
    last_event_at: datetime
    last_notification_id: int
    location: str
    archive_key: str | None
    archive_sha256: str | None
    redacted_before: datetime | None


class ConversationChangedError(Exception):
    """The conversation moved on (or was restored) since it was read: skip it this time."""


class LifecycleStore:
    def __init__(self, pool: AsyncConnectionPool, events_table: str, snapshots_table: str | None):
        self._pool = pool
        self._events = sql.Identifier(events_table)
        self._tables = [self._events] + (
            [sql.Identifier(snapshots_table)] if snapshots_table else []
        )

    async def ensure_schema(self) -> None:
        await migrate(self._pool, "taskpilot.conversation.lifecycle", SCHEMA)

    # -- catalog ------------------------------------------------------------------------

    async def position(self, name: str) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT position FROM lifecycle_positions WHERE name = %s", (name,)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def notifications(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL(
                    "SELECT notification_id, originator_id, originator_version, topic, state "
                    "FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
                ).format(self._events),
                (after, limit),
            )
            return list(await cur.fetchall())

    async def record_activity(
        self, entries: Sequence[tuple[uuid.UUID, str, str, datetime, int]], name: str, pos: int
    ) -> None:
        """Upsert (conversation, tenant, lead, event time, notification id) and the position."""
        async with self._pool.connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                await cur.executemany(
                    """INSERT INTO lifecycle_catalog
                         (conversation_id, tenant_id, lead, last_event_at, last_notification_id)
                       VALUES (%s, %s, %s, %s, %s)
                       ON CONFLICT (conversation_id) DO UPDATE SET
                         last_event_at = greatest(lifecycle_catalog.last_event_at,
                                                  EXCLUDED.last_event_at),
                         last_notification_id = greatest(
                           lifecycle_catalog.last_notification_id,
                           EXCLUDED.last_notification_id)""",
                    entries,
                )
            await conn.execute(
                """INSERT INTO lifecycle_positions VALUES (%s, %s)
                   ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position""",
                (name, pos),
            )

    async def entry(self, conversation_id: uuid.UUID) -> CatalogEntry | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT {} FROM lifecycle_catalog WHERE conversation_id = %s").format(
                    _ENTRY_COLUMNS
                ),
                (conversation_id,),
            )
            row = await cur.fetchone()
        return CatalogEntry(*row) if row else None

    async def entries(
        self, tenant_id: str, location: str, idle_before: datetime | None = None
    ) -> list[CatalogEntry]:
        """A tenant's conversations in one place, optionally only those idle since before."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL(
                    """SELECT {} FROM lifecycle_catalog
                    WHERE tenant_id = %s AND location = %s
                      AND (%s::timestamptz IS NULL OR greatest(last_event_at,
                           coalesce(restored_at, '-infinity')) < %s)
                    ORDER BY conversation_id"""
                ).format(_ENTRY_COLUMNS),
                (tenant_id, location, idle_before, idle_before),
            )
            return [CatalogEntry(*row) for row in await cur.fetchall()]

    async def relayed_position(self, relay: str) -> int:
        """How far the relay has published (0 before it ever ran)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT to_regclass('relay_positions') IS NOT NULL")
            exists = await cur.fetchone()
            if not (exists and exists[0]):
                return 0
            cur = await conn.execute(
                "SELECT position FROM relay_positions WHERE name = %s", (relay,)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def forget(self, conversation_id: uuid.UUID) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "DELETE FROM lifecycle_catalog WHERE conversation_id = %s", (conversation_id,)
            )

    # -- stored events ------------------------------------------------------------------

    async def stored_rows(self, conversation_id: uuid.UUID) -> list[tuple[int, int, str, bytes]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL(
                    "SELECT originator_version, notification_id, topic, state FROM {} "
                    "WHERE originator_id = %s ORDER BY originator_version"
                ).format(self._events),
                (conversation_id,),
            )
            return [(r[0], r[1], r[2], bytes(r[3])) for r in await cur.fetchall()]

    async def replace_states(
        self, conversation_id: uuid.UUID, states: dict[int, bytes], before: datetime
    ) -> None:
        """Rewrite some events' state in place (retention) and drop the aggregate's snapshots,
        which hold the old content; replay rebuilds them from the rewritten events."""
        async with self._pool.connection() as conn, conn.transaction():
            await self._lock(conn)
            async with conn.cursor() as cur:
                await cur.executemany(
                    sql.SQL(
                        "UPDATE {} SET state = %s "
                        "WHERE originator_id = %s AND originator_version = %s"
                    ).format(self._events),
                    [(state, conversation_id, version) for version, state in states.items()],
                )
            for table in self._tables[1:]:
                await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE originator_id = %s").format(table),
                    (conversation_id,),
                )
            await self._mark_redacted(conn, conversation_id, before)

    async def mark_redacted(self, conversation_id: uuid.UUID, before: datetime) -> None:
        async with self._pool.connection() as conn:
            await self._mark_redacted(conn, conversation_id, before)

    async def set_archive_sha(self, conversation_id: uuid.UUID, digest: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE lifecycle_catalog SET archive_sha256 = %s WHERE conversation_id = %s",
                (digest, conversation_id),
            )

    async def _mark_redacted(
        self, conn: AsyncConnection[Any], conversation_id: uuid.UUID, before: datetime
    ) -> None:
        await conn.execute(
            """UPDATE lifecycle_catalog SET redacted_before = %s
               WHERE conversation_id = %s""",
            (before, conversation_id),
        )

    async def _lock(self, conn: AsyncConnection[Any]) -> None:
        # The lock eventsourcing's recorder takes to append: no save interleaves with a move.
        await conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(self._events))

    # -- archive jobs -------------------------------------------------------------------

    async def open_job(self, tenant_id: str, cutoff: datetime) -> tuple[uuid.UUID, bool]:
        """The tenant's unfinished job (resumed), else a new one. Returns (id, resumed)."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('archive:' || %s))", (tenant_id,)
            )
            cur = await conn.execute(
                "SELECT id FROM archive_jobs WHERE tenant_id = %s AND state = 'running'",
                (tenant_id,),
            )
            row = await cur.fetchone()
            if row:
                return row[0], True
            job = uuid.uuid4()
            await conn.execute(
                "INSERT INTO archive_jobs (id, tenant_id, cutoff, state) "
                "VALUES (%s, %s, %s, 'running')",
                (job, tenant_id, cutoff),
            )
            return job, False

    async def select_items(self, job: uuid.UUID, conversations: list[uuid.UUID]) -> None:
        async with self._pool.connection() as conn, conn.cursor() as cur:
            await cur.executemany(
                """INSERT INTO archive_items (job_id, conversation_id, state)
                   VALUES (%s, %s, 'selected') ON CONFLICT DO NOTHING""",
                [(job, c) for c in conversations],
            )

    async def items(self, job: uuid.UUID, *states: str) -> list[uuid.UUID]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT conversation_id FROM archive_items
                   WHERE job_id = %s AND state = ANY(%s) ORDER BY conversation_id""",
                (job, list(states)),
            )
            return [r[0] for r in await cur.fetchall()]

    async def item_states(self, job: uuid.UUID) -> dict[str, int]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT state, count(*) FROM archive_items WHERE job_id = %s GROUP BY state",
                (job,),
            )
            return {r[0]: r[1] for r in await cur.fetchall()}

    async def skip_reasons(self, job: uuid.UUID) -> dict[str, int]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT reason, count(*) FROM archive_items
                   WHERE job_id = %s AND state = 'skipped' GROUP BY reason""",
                (job,),
            )
            return {r[0]: r[1] for r in await cur.fetchall()}

    async def skip(self, job: uuid.UUID, conversation_id: uuid.UUID, reason: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                """UPDATE archive_items SET state = 'skipped', reason = %s
                   WHERE job_id = %s AND conversation_id = %s""",
                (reason, job, conversation_id),
            )

    async def written(
        self,
        job: uuid.UUID,
        conversation_id: uuid.UUID,
        version: int,
        key: str,
        digest: str,
        events: int,
        counts: dict[str, int],
    ) -> None:
        from psycopg.types.json import Jsonb

        async with self._pool.connection() as conn:
            await conn.execute(
                """UPDATE archive_items SET state = 'written', version = %s, archive_key = %s,
                     sha256 = %s, events = %s, counts = %s
                   WHERE job_id = %s AND conversation_id = %s""",
                (version, key, digest, events, Jsonb(counts), job, conversation_id),
            )

    async def written_items(self, job: uuid.UUID) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT conversation_id, version, archive_key, sha256, events, counts
                   FROM archive_items WHERE job_id = %s AND state = 'written'
                   ORDER BY conversation_id""",
                (job,),
            )
            names = ("conversation_id", "version", "archive_key", "sha256", "events", "counts")
            return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]

    async def move_out(self, job: uuid.UUID, items: list[dict[str, Any]]) -> list[uuid.UUID]:
        """Delete the written items' events and snapshots, mark them archived in the catalog
        and the job, all in one transaction; an item whose conversation has moved past the
        archived version is skipped instead. Returns the ids archived."""
        done = []
        async with self._pool.connection() as conn, conn.transaction():
            await self._lock(conn)
            for item in items:
                conv = item["conversation_id"]
                cur = await conn.execute(
                    sql.SQL(
                        "SELECT max(originator_version) FROM {} WHERE originator_id = %s"
                    ).format(self._events),
                    (conv,),
                )
                row = await cur.fetchone()
                if row is None or row[0] != item["version"]:
                    await conn.execute(
                        """UPDATE archive_items SET state = 'skipped',
                             reason = 'changed while archiving'
                           WHERE job_id = %s AND conversation_id = %s""",
                        (job, conv),
                    )
                    continue
                for table in self._tables:
                    await conn.execute(
                        sql.SQL("DELETE FROM {} WHERE originator_id = %s").format(table),
                        (conv,),
                    )
                await conn.execute(
                    """UPDATE lifecycle_catalog SET location = 'archived', archive_key = %s,
                         archive_sha256 = %s, archived_version = %s, archived_at = now()
                       WHERE conversation_id = %s""",
                    (item["archive_key"], item["sha256"], item["version"], conv),
                )
                await conn.execute(
                    """UPDATE archive_items SET state = 'archived'
                       WHERE job_id = %s AND conversation_id = %s""",
                    (job, conv),
                )
                done.append(conv)
        return done

    async def unannounced(self, job: uuid.UUID) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT i.conversation_id, c.tenant_id, c.lead, i.version, i.archive_key,
                          i.sha256, i.events, i.counts
                   FROM archive_items i JOIN lifecycle_catalog c USING (conversation_id)
                   WHERE i.job_id = %s AND i.state = 'archived' AND NOT i.announced""",
                (job,),
            )
            names = (
                *("conversation_id", "tenant_id", "lead", "version"),
                *("key", "sha256", "events", "counts"),
            )
            return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]

    async def announced(self, job: uuid.UUID, conversations: list[uuid.UUID]) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                """UPDATE archive_items SET announced = true
                   WHERE job_id = %s AND conversation_id = ANY(%s)""",
                (job, conversations),
            )

    async def finish_job(self, job: uuid.UUID) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE archive_jobs SET state = 'finished', finished_at = now() WHERE id = %s",
                (job,),
            )

    # -- restore ------------------------------------------------------------------------

    async def move_in(self, conversation_id: uuid.UUID, rows: list[StoredRow]) -> bool:
        """Put archived events back with their versions and notification ids (behind the
        relay's position, so nothing is published again) and mark the conversation hot.
        False when it is hot already (restored concurrently)."""
        async with self._pool.connection() as conn, conn.transaction():
            await self._lock(conn)
            cur = await conn.execute(
                """SELECT location FROM lifecycle_catalog WHERE conversation_id = %s
                   FOR UPDATE""",
                (conversation_id,),
            )
            row = await cur.fetchone()
            if row is None or row[0] != "archived":
                return False
            cur = await conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE originator_id = %s").format(self._events),
                (conversation_id,),
            )
            present = await cur.fetchone()
            if present and present[0]:
                raise ConversationChangedError(
                    f"{conversation_id} has new events in the hot store while archived"
                )
            async with conn.cursor() as cur2:
                await cur2.executemany(
                    sql.SQL(
                        "INSERT INTO {} (originator_id, originator_version, topic, state, "
                        "notification_id) VALUES (%s, %s, %s, %s, %s)"
                    ).format(self._events),
                    [
                        (conversation_id, r.version, r.topic, r.state, r.notification_id)
                        for r in rows
                    ],
                )
            await conn.execute(
                """UPDATE lifecycle_catalog SET location = 'hot', archive_key = NULL,
                     archive_sha256 = NULL, archived_version = NULL, restored_at = now()
                   WHERE conversation_id = %s""",
                (conversation_id,),
            )
        return True

    # -- retention ----------------------------------------------------------------------

    async def record_retention(
        self,
        run: uuid.UUID,
        tenant_id: str,
        rules: dict[str, Any],
        cutoff: datetime,
        n: tuple[int, int, int],
    ) -> None:
        from psycopg.types.json import Jsonb

        async with self._pool.connection() as conn:
            await conn.execute(
                """INSERT INTO retention_runs (id, tenant_id, rules, cutoff,
                     conversations_redacted, events_redacted, archives_rewritten)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                (run, tenant_id, Jsonb(rules), cutoff, *n),
            )

    # -- schedule -----------------------------------------------------------------------

    @asynccontextmanager
    async def scheduled_run(
        self, schedule: str, replica: str, interval_s: float
    ) -> AsyncIterator[uuid.UUID | None]:
        """A run's lease: its id when this replica holds the schedule's lock and the last run
        started at least ``interval_s`` ago, else None. The session lock is held for the
        whole run (a replica that dies drops it with its connection); the run is recorded
        before the caller starts it, so replicas ticking together run the jobs once."""
        async with self._pool.connection() as conn:
            await conn.set_autocommit(True)
            cur = await conn.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s))", (f"lifecycle-schedule:{schedule}",)
            )
            locked = await cur.fetchone()
            if not (locked and locked[0]):
                yield None
                return
            try:
                run = uuid.uuid4()
                cur = await conn.execute(
                    """INSERT INTO lifecycle_runs (id, schedule, replica)
                       SELECT %(id)s, %(schedule)s, %(replica)s
                       WHERE NOT EXISTS (
                         SELECT 1 FROM lifecycle_runs WHERE schedule = %(schedule)s
                           AND started_at > clock_timestamp() - make_interval(secs => %(s)s))
                       RETURNING id""",
                    {"id": run, "schedule": schedule, "replica": replica, "s": interval_s},
                )
                yield run if await cur.fetchone() else None
            finally:
                await conn.execute(
                    "SELECT pg_advisory_unlock(hashtext(%s))", (f"lifecycle-schedule:{schedule}",)
                )

    async def finish_run(
        self, run: uuid.UUID, tenants: int, archived: int, redacted: int, failures: int
    ) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                """UPDATE lifecycle_runs SET finished_at = clock_timestamp(), tenants = %s,
                     archived = %s, redacted = %s, failures = %s WHERE id = %s""",
                (tenants, archived, redacted, failures, run),
            )


_ENTRY_COLUMNS = sql.SQL(
    "conversation_id, tenant_id, lead, last_event_at, last_notification_id, location, "
    "archive_key, archive_sha256, redacted_before"
)
