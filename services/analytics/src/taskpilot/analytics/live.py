"""The live feed of read-model changes (adapter): PostgreSQL LISTEN, fanned out in process.

Projections ``pg_notify`` inside their transaction, so a notice arrives only after the change
committed, on whichever analytics replica projected it; every replica listens on the primary
(notifications do not reach read replicas). Each server-sent-event stream subscribes with its
tenant and receives only that tenant's notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import sql

from taskpilot.analytics.domain import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
RESYNC: dict[str, Any] = {"kind": "resync"}
"""Sent instead of the notices a slow subscriber missed, and after a reconnect: refetch."""


class ChangeFeed:
    def __init__(self, database_url: str):
        self._url = database_url
        self._subscribers: dict[asyncio.Queue[dict[str, Any]], str | None] = {}
        self.listening = asyncio.Event()

    async def run(self) -> None:
        """Listen forever; reconnect after a lost connection (subscribers are told to resync)."""
        while True:
            try:
                await self._listen()
            except (psycopg.OperationalError, OSError) as exc:
                log.warning("change feed lost its connection (%r); reconnecting", exc)
            self.listening.clear()
            self._broadcast_all(RESYNC)
            await asyncio.sleep(1.0)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
            self.listening.set()
            async for notice in conn.notifies():
                try:
                    payload = json.loads(notice.payload)
                except ValueError:
                    continue
                self._deliver(payload)

    def _deliver(self, payload: dict[str, Any]) -> None:
        tenant = payload.get("tenant_id")
        for queue, wanted in list(self._subscribers.items()):
            if tenant is None or wanted is None or wanted == tenant:
                _offer(queue, payload)

    def _broadcast_all(self, payload: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            _offer(queue, payload)

    @contextlib.asynccontextmanager
    async def subscribe(self, tenant_id: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """Notices of one tenant (and installation-wide ones, e.g. a finished rebuild)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers[queue] = tenant_id
        try:
            yield queue
        finally:
            self._subscribers.pop(queue, None)


def _offer(queue: asyncio.Queue[dict[str, Any]], payload: dict[str, Any]) -> None:
    try:
        queue.put_nowait(payload)
    except asyncio.QueueFull:
        # Too slow to keep up: drop what it has not read and tell it to refetch.
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(RESYNC)
