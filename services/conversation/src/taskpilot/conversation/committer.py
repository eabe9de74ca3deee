"""Group commit: many conversations' decisions saved in one transaction.

eventsourcing's PostgreSQL recorder takes an exclusive table lock and commits once per save;
with an fsync per commit, one save costs ~10 ms here, so saving each message on its own caps
a process at ~100 messages/s. Handlers load and decide concurrently (one decision at a time per
conversation in this process), queue the changed aggregates, and one flusher saves whatever is
queued in a single ``app.save(*aggregates)``. A conflict with another process fails the batch
(its pending events are gone with it), so every decision in it is reloaded and taken again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

from eventsourcing.persistence import IntegrityError
from prometheus_client import Histogram

from taskpilot.conversation.domain import Conversation
from taskpilot.conversation.service import RETRIES, Change, Conversations

BATCH = Histogram(
    "taskpilot_conversation_commit_batch_size",
    "Aggregates saved per transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)


class GroupCommitter:
    def __init__(self, app: Conversations, max_batch: int = 128):
        self._app = app
        self._max = max_batch
        self._queue: list[tuple[Conversation, asyncio.Future[None]]] = []
        self._ready = asyncio.Event()
        self._locks: defaultdict[uuid.UUID, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._users: defaultdict[uuid.UUID, int] = defaultdict(int)

    async def run(self, change: Change) -> Any:
        """Execute one use case: load, decide, save (batched), retried on conflicts."""
        self._users[change.id] += 1
        try:
            async with self._locks[change.id]:
                return await self._run(change)
        finally:
            self._users[change.id] -= 1
            if not self._users[change.id]:
                del self._users[change.id], self._locks[change.id]

    async def _run(self, change: Change) -> Any:
        for attempt in range(RETRIES):
            conversation = await asyncio.to_thread(self._app.load, change)
            outcome = change.decide(conversation)
            if not outcome:
                return outcome
            saved: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._queue.append((conversation, saved))
            self._ready.set()
            try:
                await saved
            except IntegrityError:
                if attempt == RETRIES - 1:
                    raise
                continue
            return outcome
        return False

    async def flush_forever(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                await self._save(batch)

    async def _save(self, batch: list[tuple[Conversation, asyncio.Future[None]]]) -> None:
        BATCH.observe(len(batch))
        try:
            await asyncio.to_thread(self._app.save, *(c for c, _ in batch))
        except Exception as exc:
            for _, saved in batch:
                if not saved.done():
                    saved.set_exception(exc)
            return
        for _, saved in batch:
            if not saved.done():
                saved.set_result(None)
        self._app.on_saved()
