"""Rebuild the read models from the event history (``taskpilot projections rebuild``).

1. Take the projection lock exclusively: live projections (which take it shared, per transaction)
   wait, with their messages kept in progress, so they cannot interleave with the replay.
2. Empty every read model (operator input, such as dead-letter actions, is kept).
3. Replay each source stream from its first message to the last one present when the replay
   started, through the same projections as the live consumers, in stream order.
4. Release the lock. The live consumers go on from their own positions; whatever the replay
   already applied is recognised by its event id and changes nothing.

Each stream is replayed in its own order and projections of different streams touch different
rows, so the result is the one the live consumers produced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from psycopg_pool import AsyncConnectionPool

from taskpilot.analytics.domain import NOTIFY_CHANNEL, Projectable
from taskpilot.analytics.handlers import SOURCES, Source
from taskpilot.analytics.repository import PROJECTION_LOCK, OperatorStore, ProjectionStore
from taskpilot.runtime.db import open_pool
from taskpilot.tenancy import tenant_transaction

log = logging.getLogger(__name__)

BATCH = 500


@dataclass
class RebuildReport:
    applied: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.applied.values())


class Rebuilder:
    def __init__(
        self,
        js: JetStreamContext,
        database_url: str,
        projections: ProjectionStore,
        operator: OperatorStore,
    ):
        self._js = js
        self._database_url = database_url
        self._projections = projections
        self._operator = operator

    async def rebuild(self, progress: Callable[[str, int], None] | None = None) -> RebuildReport:
        # Connections of its own: live projections waiting for the lock hold some of the
        # service's pool, and must not starve the rebuild they wait for.
        pool = await open_pool(self._database_url, min_size=2, max_size=2)
        try:
            async with pool.connection() as lock:
                await lock.set_autocommit(True)
                await lock.execute("SELECT pg_advisory_lock(%s)", (PROJECTION_LOCK,))
                try:
                    return await self._rebuild(pool, progress)
                finally:
                    await lock.execute(
                        "SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, '{"kind": "rebuilt"}')
                    )
                    await lock.execute("SELECT pg_advisory_unlock(%s)", (PROJECTION_LOCK,))
        finally:
            await pool.close()

    async def _rebuild(
        self, pool: AsyncConnectionPool, progress: Callable[[str, int], None] | None
    ) -> RebuildReport:
        report = RebuildReport()
        async with pool.connection() as conn, conn.transaction():
            await self._operator.clear_projections(conn)
        for source in SOURCES:
            await self._replay(pool, source, report, progress)
        return report

    async def _replay(
        self,
        pool: AsyncConnectionPool,
        source: Source,
        report: RebuildReport,
        progress: Callable[[str, int], None] | None,
    ) -> None:
        stream = source.spec.stream.name
        try:
            sub = await self._js.pull_subscribe(
                source.spec.filter_subject,
                stream=stream,
                config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.ALL,
                    ack_policy=AckPolicy.NONE,
                    inactive_threshold=60.0,
                ),
            )
        except NotFoundError:
            return  # the stream does not exist yet: nothing happened
        applied = skipped = 0
        info = await sub.consumer_info()
        pending = info.num_pending or 0
        try:
            while pending > 0:
                msgs = await sub.fetch(min(BATCH, pending), timeout=10)
                pending -= len(msgs)
                events: list[Projectable] = []
                for msg in msgs:
                    try:
                        event = source.parser.model_validate_json(msg.data)
                    except ValueError:
                        event = None  # it was dead-lettered live too
                    if event is None:
                        skipped += 1
                    else:
                        events.append(cast(Projectable, event))
                applied += await self._apply(pool, events)
                if progress:
                    progress(stream, applied)
        finally:
            await sub.unsubscribe()
            try:
                await self._js.delete_consumer(stream, info.name)
            except NotFoundError:
                pass
        report.applied[stream] = applied
        report.skipped[stream] = skipped
        log.info("rebuild: %s applied %d, skipped %d", stream, applied, skipped)

    async def _apply(self, pool: AsyncConnectionPool, events: list[Projectable]) -> int:
        """Apply events in order, one transaction per run of events of the same tenant."""
        applied, start = 0, 0
        while start < len(events):
            tenant = events[start].tenant_id
            end = start
            while end < len(events) and events[end].tenant_id == tenant:
                end += 1
            async with tenant_transaction(pool, tenant) as conn:
                for event in events[start:end]:
                    applied += await self._projections.apply_in(conn, event, live=False)
            start = end
        return applied
