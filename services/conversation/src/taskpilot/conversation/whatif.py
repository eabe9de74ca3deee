"""What-if replay: a past conversation's turns through today's inference, nothing sent.

Each turn the assistant was asked (the lead's messages and the history before them, as stored
in its first ``ReplyRequested``) goes to inference as a dry run (``ReplyWhatIf``, request-reply):
how would it answer now, with today's settings, prompts, models and knowledge? Then and now
are set side by side. The event store is only read; nothing is published to the sender, the
tools or the CONVERSATION stream, and inference writes no cache entry for it. A model's cost
is still counted by inference: replaying a long conversation on paid models costs money.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from taskpilot.contracts.inference import ReplyWhatIf, Turn, WhatIfAnswer
from taskpilot.conversation.redaction import REDACTED
from taskpilot.runtime.bus import Bus, RequestError

History = Callable[[str, str], list[dict[str, Any]]]


@dataclass
class PastTurn:
    """One answered turn of the stored history, and how the assistant answered it then."""

    turn_id: str
    at: str
    inbound: str
    history: list[dict[str, str]]
    then_reply: str | None = None
    then_tier: str | None = None
    then_tools: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Comparison:
    turn_id: str
    at: str
    inbound: str
    then_reply: str | None
    then_tier: str | None
    then_tools: list[str]
    now_reply: str | None = None
    now_tier: str | None = None
    now_tools: list[str] = field(default_factory=list)
    changed: bool | None = None
    error: str | None = None


def past_turns(events: list[dict[str, Any]]) -> list[PastTurn]:
    """The turns the assistant answered, in order (pure; from :meth:`history_of`'s events).

    A superseded turn was never answered on its own (the next turn took its messages), so it
    is left out; tool rounds belong to their turn.
    """
    turns: dict[str, PastTurn] = {}
    for e in events:
        data, kind = e["data"], e["type"]
        turn = turns.get(data.get("turn_id", ""))
        if kind == "ReplyRequested" and data["round"] == 0:
            turn_id = data["turn_id"]
            turns[turn_id] = PastTurn(turn_id, e["at"], data["text"], data["history"])
        elif kind == "TurnSuperseded":
            turns.pop(data["turn_id"], None)
        elif kind == "ToolCallsRequested" and turn is not None:
            turn.then_tools += [call["tool"] for call in data["calls"]]
        elif kind == "ReplyComposed" and turn is not None:
            turn.then_reply = data["reply"].get("text")
            turn.then_tier = data["reply"].get("tier")
    return [t for t in turns.values() if t.then_tier is not None]


def compare(turn: PastTurn, now: WhatIfAnswer) -> Comparison:
    now_tools = [call.tool for call in now.tool_calls]
    then = asdict(turn)
    del then["history"]
    if now.error:
        return Comparison(**then, error=now.error)
    changed = (now.text, now_tools) != (turn.then_reply, turn.then_tools)
    return Comparison(
        **then, now_reply=now.text, now_tier=now.tier, now_tools=now_tools, changed=changed
    )


class WhatIf:
    def __init__(self, history: History, bus: Bus, timeout_s: float = 60.0, parallel: int = 4):
        self._history = history
        self._bus = bus
        self._timeout = timeout_s
        self._parallel = asyncio.Semaphore(parallel)

    async def replay(
        self, tenant_id: str, conversation_id: str, limit: int = 20
    ) -> list[Comparison]:
        """The last ``limit`` answered turns, then and now. Raises ConversationNotFoundError."""
        events = await asyncio.to_thread(self._history, tenant_id, conversation_id)
        turns = past_turns(events)[-limit:]
        lead = _lead_of(events)
        return list(
            await asyncio.gather(*(self._now(tenant_id, conversation_id, lead, t) for t in turns))
        )

    async def _now(
        self, tenant_id: str, conversation_id: str, lead: str, turn: PastTurn
    ) -> Comparison:
        if turn.inbound == REDACTED:
            return compare(turn, WhatIfAnswer(error="content redacted by retention"))
        request = ReplyWhatIf(
            tenant_id=tenant_id,
            correlation_id=f"what-if:{turn.turn_id}",
            conversation_id=conversation_id,
            turn_id=turn.turn_id,
            lead=lead,
            text=turn.inbound,
            history=[Turn.model_validate(h) for h in turn.history],
        )
        async with self._parallel:
            try:
                now = await self._bus.request(request, WhatIfAnswer, timeout=self._timeout)
            except RequestError as exc:
                now = WhatIfAnswer(error=f"inference did not answer: {exc}")
        return compare(turn, now)


def _lead_of(events: list[dict[str, Any]]) -> str:
    started = next(e for e in events if e["type"] == "Started")  # a history starts with it
    return str(started["data"]["lead"])
