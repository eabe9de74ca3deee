"""Retention's redaction of stored events (pure): message content goes, the facts stay.

Each event keeps its type, version, time, ids, counts, tiers, costs and amounts, so replay
still works and metrics stay; only what a person wrote or was told is replaced. Redacting
twice gives the same bytes, so a rerun changes nothing.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import Transcoder

REDACTED = "[redacted]"


def _text(value: Any) -> Any:
    return REDACTED if isinstance(value, str) and value else value


def _message_received(s: dict[str, Any]) -> None:
    s["text"] = _text(s.get("text"))
    s["lead_name"] = None


def _reply_requested(s: dict[str, Any]) -> None:
    s["text"] = _text(s.get("text"))
    s["history"] = [{**h, "text": _text(h.get("text"))} for h in s.get("history") or []]
    s["tool_results"] = [{**r, "result": None} for r in s.get("tool_results") or []]


def _reply_composed(s: dict[str, Any]) -> None:
    reply = dict(s.get("reply") or {})
    reply["text"] = _text(reply.get("text"))
    reply["citations"] = []
    s["reply"] = reply


def _human_replied(s: dict[str, Any]) -> None:
    s["text"] = _text(s.get("text"))


def _turn_finished(s: dict[str, Any]) -> None:
    s["lead_text"] = _text(s.get("lead_text"))
    s["reply_text"] = _text(s.get("reply_text"))


def _tool_calls_requested(s: dict[str, Any]) -> None:
    s["calls"] = [{**c, "arguments": {}} for c in s.get("calls") or []]


def _tool_call_completed(s: dict[str, Any]) -> None:
    s["result"] = None


REDACTORS = {
    "MessageReceived": _message_received,
    "ReplyRequested": _reply_requested,
    "ReplyComposed": _reply_composed,
    "HumanReplied": _human_replied,
    "TurnFinished": _turn_finished,
    "ToolCallsRequested": _tool_calls_requested,
    "ToolCallCompleted": _tool_call_completed,
}


def redact_state(transcoder: Transcoder, topic: str, state: bytes) -> bytes:
    """The stored state with its content redacted (the same bytes if it holds none)."""
    redact = REDACTORS.get(topic.rsplit(".", 1)[-1])
    if redact is None:
        return state
    decoded = transcoder.decode(state)
    redact(decoded)
    encoded = transcoder.encode(decoded)
    return state if encoded == state else encoded
