"""Checking a model's answer before a lead sees it. Pure.

A level-2 answer that fails a check goes to level 3; a level-3 answer that fails one becomes
the holding reply and a handoff. The checks: the JSON the prompt asks for; the model's own
status (unsure, handoff); refusals; a factual claim (a number, price, time or percentage)
with no source; a cited source that does not exist; and any number in the reply that neither
the cited data, the tool results nor the lead's own message contains (the model invented it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from taskpilot.inference.domain.prompts import DataBlock

_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_CLAIM = re.compile(r"\d|[€$£%]", re.UNICODE)
_REFUSALS = re.compile(
    r"\b(i can(no|')t help|i'?m not able to|as an ai|i am an ai|i don'?t know|i'?m not sure|"
    r"no puedo ayudar|no lo sé|no estoy seguro|não posso ajudar|não sei|ich weiß nicht|"
    r"je ne sais pas|non lo so)\b",
    re.IGNORECASE,
)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class InvalidAnswerError(ValueError):
    """The model did not answer in the JSON shape the prompt asks for."""


@dataclass(frozen=True)
class ModelAnswer:
    reply: str
    sources: tuple[int, ...]
    status: str
    personal: bool


def parse_answer(content: str | None) -> ModelAnswer:
    match = _JSON_OBJECT.search(content or "")
    if match is None:
        raise InvalidAnswerError("no JSON object in the answer")
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise InvalidAnswerError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidAnswerError("the answer is not a JSON object")
    reply, sources, status = data.get("reply"), data.get("sources", []), data.get("status")
    if not isinstance(reply, str) or not reply.strip():
        raise InvalidAnswerError("no reply text")
    if not isinstance(sources, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in sources
    ):
        raise InvalidAnswerError("sources must be a list of block numbers")
    if status not in ("answered", "unsure", "handoff"):
        raise InvalidAnswerError(f"unknown status {status!r}")
    return ModelAnswer(reply.strip(), tuple(sources), status, bool(data.get("personal", False)))


def numbers(text: str) -> set[str]:
    """Numbers in a comparable form: times as H:MM ("09:00:00" -> "9:00"), "35,00" -> "35",
    leading zeros dropped ("04" -> "4", as in "2026-12-04" and "the 4th")."""
    return {_canonical(n) for n in _NUMBER.findall(text)}


def _canonical(number: str) -> str:
    if ":" in number:
        hours, minutes = number.split(":")[:2]
        return f"{int(hours)}:{minutes}"
    whole, _, fraction = number.replace(",", ".").partition(".")
    fraction = fraction.replace(".", "").rstrip("0")
    whole = whole.lstrip("0") or "0"
    return f"{whole}.{fraction}" if fraction else whole


def problem(
    answer: ModelAnswer,
    blocks: Sequence[DataBlock],
    lead_text: str,
    tool_text: str = "",
) -> str | None:
    """Why this answer must not be sent as it is, or None when it passes every check."""
    if answer.status != "answered":
        return f"the model is {answer.status}"
    if _REFUSALS.search(answer.reply):
        return "the model refused or is unsure"
    by_number = {b.number: b for b in blocks}
    unknown = [s for s in answer.sources if s not in by_number]
    if unknown:
        return f"cites data blocks that do not exist: {unknown}"
    cited = " ".join(by_number[s].text for s in answer.sources)
    if _CLAIM.search(answer.reply) and not answer.sources and not tool_text:
        return "states a fact without citing any source"
    grounded = numbers(cited) | numbers(lead_text) | numbers(tool_text)
    invented = sorted(numbers(answer.reply) - grounded)
    if invented:
        return f"states {', '.join(invented)} which no source contains"
    return None
