"""Durable timers fire here: a lead's burst is over, or a turn ran out of time.

The relay writes the timers (after commit, from stored events); this loop, in the process
whose relay holds the lock, fires the due ones through the application's use cases, which are
idempotent (a burst already answered, a turn already closed: nothing happens).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from taskpilot.conversation.adapters import Timers
from taskpilot.conversation.service import (
    ConversationNotFoundError,
    Conversations,
    window_template,
)
from taskpilot.tenancy import TenantDirectory

log = logging.getLogger(__name__)


class TimerLoop:
    def __init__(
        self,
        app: Conversations,
        timers: Timers,
        tenants: TenantDirectory,
        active: asyncio.Event,
        poll_s: float = 0.05,
    ):
        self._app = app
        self._timers = timers
        self._tenants = tenants
        self._active = active
        self._poll = poll_s

    async def run(self) -> None:
        await self._active.wait()
        while True:
            if not await self.fire_due():
                await asyncio.sleep(self._poll)

    async def fire_due(self) -> int:
        due = await self._timers.due()
        for conversation, kind, key, at in due:
            try:
                if kind == "burst":
                    await asyncio.to_thread(self._app.flush, conversation)
                elif kind == "turn":
                    await self._deadline(conversation, key)
            except ConversationNotFoundError:
                pass  # erased meanwhile
            await self._timers.cancel(conversation, kind, key, at)
            log.info(
                "timer %s fired for %s (due %s, late %.0f ms)",
                kind,
                conversation,
                at,
                (datetime.now(UTC) - at).total_seconds() * 1000,
            )
        return len(due)

    async def _deadline(self, conversation: object, turn_id: str) -> None:
        current: Any = await asyncio.to_thread(self._app.repository.get, conversation)
        profile = (await self._tenants.get(current.tenant_id)).profile
        holding = profile.render(profile.handoff_message)
        await asyncio.to_thread(
            self._app.deadline_passed,
            conversation,  # type: ignore[arg-type]
            turn_id,
            holding,
            window_template(profile),
        )
