"""The memory policy: finished turns to knowledge, never for a lead erased since."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskpilot.contracts.conversation import TurnFinished
from taskpilot.contracts.knowledge import EraseLeadMemory, MemoryResult, RememberTurn
from taskpilot.conversation.domain import conversation_id
from taskpilot.conversation.memory import LeadMemory, MemoryRefusedError

TENANT, LEAD = "acme", "34600111222"
CONVERSATION = conversation_id(TENANT, LEAD)
FINISHED_AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


class Knowledge:
    """Stands in for the bus's request-reply to knowledge's memory responders."""

    def __init__(self, error: str | None = None, on_request: Any = None):
        self.requests: list[Any] = []
        self._error = error
        self._on_request = on_request

    async def request(self, message: Any, reply_type: type, *, timeout: float) -> MemoryResult:
        self.requests.append(message)
        if self._on_request is not None:
            self._on_request()
        return MemoryResult(stored=1, error=self._error)


class Erasures:
    def __init__(self) -> None:
        self.erased_at: dict[uuid.UUID, datetime] = {}

    async def erased_since(self, conversation: uuid.UUID, at: datetime) -> bool:
        erased = self.erased_at.get(conversation)
        return erased is not None and erased >= at


def finished(**overrides: Any) -> TurnFinished:
    fields: dict[str, Any] = {
        "tenant_id": TENANT,
        "correlation_id": "wamid.1",
        "conversation_id": str(CONVERSATION),
        "lead": LEAD,
        "sequence": 6,
        "occurred_at": FINISHED_AT,
        "turn_id": "wamid.1",
        "lead_text": "do you open on sundays?",
        "reply_text": "Sundays 10 to 14.",
    }
    return TurnFinished(**(fields | overrides))


def memory(knowledge: Knowledge, erasures: Erasures) -> LeadMemory:
    return LeadMemory(knowledge, erasures)  # type: ignore[arg-type]


async def test_a_finished_turn_is_remembered_under_its_turn() -> None:
    knowledge, turn = Knowledge(), finished()

    assert await memory(knowledge, Erasures()).remember(turn) is True

    [remember] = knowledge.requests
    assert isinstance(remember, RememberTurn)
    assert (remember.tenant_id, remember.lead, remember.turn_id) == (TENANT, LEAD, "wamid.1")
    assert (remember.lead_text, remember.reply_text) == (turn.lead_text, turn.reply_text)
    assert remember.causation_id == str(turn.event_id)


async def test_a_very_long_turn_is_cut_to_what_knowledge_accepts() -> None:
    knowledge = Knowledge()

    await memory(knowledge, Erasures()).remember(finished(lead_text="a" * 9000))

    assert len(knowledge.requests[0].lead_text) == 8000


async def test_a_turn_of_a_lead_erased_since_is_dropped() -> None:
    knowledge, erasures = Knowledge(), Erasures()
    erasures.erased_at[CONVERSATION] = FINISHED_AT + timedelta(minutes=1)

    assert await memory(knowledge, erasures).remember(finished()) is False
    assert knowledge.requests == []


async def test_a_lead_who_wrote_again_after_an_erasure_is_remembered_again() -> None:
    knowledge, erasures = Knowledge(), Erasures()
    erasures.erased_at[CONVERSATION] = FINISHED_AT - timedelta(days=1)

    assert await memory(knowledge, erasures).remember(finished()) is True


async def test_a_turn_remembered_while_the_lead_was_erased_is_forgotten_at_once() -> None:
    erasures = Erasures()

    def erasure_runs() -> None:
        erasures.erased_at[CONVERSATION] = FINISHED_AT + timedelta(seconds=1)

    knowledge = Knowledge(on_request=erasure_runs)

    assert await memory(knowledge, erasures).remember(finished()) is False
    assert [type(r) for r in knowledge.requests] == [RememberTurn, EraseLeadMemory]
    assert knowledge.requests[1].lead == LEAD


async def test_a_refusal_by_knowledge_is_an_error_the_consumer_retries() -> None:
    with pytest.raises(MemoryRefusedError, match="embedding model"):
        await memory(Knowledge(error="embedding model changed"), Erasures()).remember(finished())
