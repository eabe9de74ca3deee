"""The lead's long-term memory: every finished turn goes to the knowledge service.

A policy after commit: the relay publishes ``TurnFinished`` (a turn whose reply reached the
lead) to the CONVERSATION stream; the ``conversation-memory`` consumer asks knowledge to
remember it (request-reply; while knowledge is away, the consumer's backoff retries it).

An erased lead is not remembered again: a turn from before the lead's last erasure is dropped,
and one remembered while an erasure ran is forgotten at once (the erasure itself erases the
memory a second time once the stored events are gone, see :meth:`Gdpr.erase`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from taskpilot.contracts.conversation import TurnFinished
from taskpilot.contracts.knowledge import EraseLeadMemory, MemoryResult, RememberTurn
from taskpilot.runtime.bus import Bus

MAX_TEXT = 8000  # RememberTurn's limit: the start of a very long turn is what is recalled


class Erasures(Protocol):
    async def erased_since(self, conversation: uuid.UUID, at: datetime) -> bool:
        """Whether the conversation's lead was erased at or after ``at``."""
        ...


class MemoryRefusedError(Exception):
    """Knowledge answered with an error; the consumer retries, then dead-letters."""


class LeadMemory:
    def __init__(self, bus: Bus, erasures: Erasures, timeout_s: float = 10.0):
        self._bus = bus
        self._erasures = erasures
        self._timeout = timeout_s

    async def remember(self, turn: TurnFinished) -> bool:
        """Store the turn in the lead's memory; False when the lead was erased since."""
        if await self._erased(turn):
            return False
        await self._ask(
            turn.caused(
                RememberTurn,
                lead=turn.lead,
                turn_id=turn.turn_id,
                lead_text=turn.lead_text[:MAX_TEXT],
                reply_text=turn.reply_text[:MAX_TEXT],
            )
        )
        if await self._erased(turn):  # an erasure ran meanwhile: take it back
            await self._ask(turn.caused(EraseLeadMemory, lead=turn.lead))
            return False
        return True

    async def _erased(self, turn: TurnFinished) -> bool:
        conversation = uuid.UUID(turn.conversation_id)
        return await self._erasures.erased_since(conversation, turn.occurred_at)

    async def _ask(self, request: RememberTurn | EraseLeadMemory) -> MemoryResult:
        result = await self._bus.request(request, MemoryResult, timeout=self._timeout)
        if result.error:
            raise MemoryRefusedError(f"knowledge memory refused {request.type}: {result.error}")
        return result
