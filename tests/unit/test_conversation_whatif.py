"""What-if replay, the pure part: which past turns are replayed, and how then and now compare."""

from __future__ import annotations

from typing import Any

from taskpilot.contracts.inference import ToolCall, WhatIfAnswer
from taskpilot.conversation.domain import Conversation, tool_call_key
from taskpilot.conversation.service import Conversations
from taskpilot.conversation.whatif import PastTurn, compare, past_turns

TENANT, LEAD, NUMBER = "acme", "34600111222", "pn-1"


def reply(text: str | None, **overrides: Any) -> dict[str, Any]:
    return {"text": text, "tier": "L1", "source": "faq", "model": "local"} | overrides


def history() -> list[dict[str, Any]]:
    """A stored conversation: a superseded turn, an answered burst, a tool round, a silence."""
    app = Conversations(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    c = Conversation(TENANT, LEAD, NUMBER)
    c.receive("wamid.1", "text", "a haircut", "Ana", "in-1")
    c.receive("wamid.2", "text", "how much?", "Ana", "in-2")  # supersedes wamid.1
    c.compose("wamid.2", reply("15 EUR."), "gen-2")
    c.receive("wamid.3", "text", "monday at 10?", "Ana", "in-3")
    calls = [{"id": "call_a", "tool": "check_availability", "arguments": {}}]
    c.compose("wamid.3", reply(None, source="model", tool_calls=calls), "gen-3")
    c.tool_completed(tool_call_key("wamid.3", 0, "call_a"), {"free": True}, None, "done-a")
    c.compose("wamid.3", reply("Monday 10:00 is free.", tier="L2", round=1), "gen-4")
    c.receive("wamid.4", "text", "buy cheap pills", "Ana", "in-4")
    c.compose("wamid.4", reply(None, tier="L0", source="silence"), "gen-5")
    c.receive("wamid.5", "text", "still there?", "Ana", "in-5")  # never answered
    app.save(c)
    return app.history_of(TENANT, c.id)


def test_every_answered_turn_is_replayed_once_with_its_answer_then() -> None:
    turns = past_turns(history())

    assert [(t.turn_id, t.inbound, t.then_reply, t.then_tier) for t in turns] == [
        ("wamid.2", "a haircut\nhow much?", "15 EUR.", "L1"),
        ("wamid.3", "monday at 10?", "Monday 10:00 is free.", "L2"),
        ("wamid.4", "buy cheap pills", None, "L0"),
    ]
    assert turns[1].then_tools == ["check_availability"]
    assert turns[1].history == [
        {"role": "lead", "text": "a haircut"},
        {"role": "lead", "text": "how much?"},
        {"role": "assistant", "text": "15 EUR."},
    ]


def turn(**overrides: Any) -> PastTurn:
    fields: dict[str, Any] = {
        "turn_id": "wamid.2",
        "at": "2026-05-01T12:00:00+00:00",
        "inbound": "how much?",
        "history": [],
        "then_reply": "15 EUR.",
        "then_tier": "L1",
    }
    return PastTurn(**(fields | overrides))


def test_the_same_answer_today_is_unchanged() -> None:
    same = compare(turn(), WhatIfAnswer(text="15 EUR.", tier="L1", source="faq"))

    assert (same.now_reply, same.now_tier, same.changed, same.error) == (
        "15 EUR.",
        "L1",
        False,
        None,
    )


def test_another_answer_or_a_tool_call_today_is_a_change() -> None:
    other = compare(turn(), WhatIfAnswer(text="16 EUR.", tier="L2", source="model"))
    tools = compare(
        turn(),
        WhatIfAnswer(tier="L2", source="model", tool_calls=[ToolCall(id="c", tool="get_price")]),
    )

    assert other.changed is True and other.then_reply == "15 EUR."
    assert (tools.changed, tools.now_reply, tools.now_tools) == (True, None, ["get_price"])


def test_no_answer_today_is_an_error_not_a_change() -> None:
    failed = compare(turn(), WhatIfAnswer(error="inference did not answer"))

    assert (failed.changed, failed.error) == (None, "inference did not answer")
