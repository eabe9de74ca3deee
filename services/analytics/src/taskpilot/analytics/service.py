"""Analytics use cases: project events, answer dashboard queries."""

from __future__ import annotations

from taskpilot.analytics.repository import AnalyticsRepository
from taskpilot.contracts.conversation import ConversationEvent
from taskpilot.contracts.dlq import DeadLettered


class Projector:
    def __init__(self, repo: AnalyticsRepository):
        self._repo = repo

    async def when_conversation_event(self, event: ConversationEvent) -> None:
        await self._repo.project(event)

    async def when_dead_lettered(self, letter: DeadLettered) -> None:
        await self._repo.record_dead_letter(letter)
