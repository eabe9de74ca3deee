"""The last look at a model's words before a lead reads them: they must not repeat the
assistant's instructions, link anywhere the business's data did not, or state a price the
business did not. Pure.

The prompt tells the model never to reveal its rules, but a lead or a knowledge document can
talk a model into anything; only this check makes sure. A reply that shares a run of
``LEAK_WORDS`` consecutive words with the system message is withheld. Eight words is longer
than any phrase a normal answer shares with the rules by chance ("someone from the team will
check" is six). A paraphrase passes: the rules are in the open-source code and hold no tenant
secret, so what the check prevents is a hijacked assistant reciting its wiring to a lead.
"""

from __future__ import annotations

import re

from taskpilot.inference.domain.answers import numbers

LEAK_WORDS = 8

_WORD = re.compile(r"\w+", re.UNICODE)
_LINK = re.compile(r"(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_MONEY = r"(?:€|\$|£|R\$|eur|euros?|usd|dollars?|gbp|pounds?|reais)"
_PRICE = re.compile(
    rf"(?:{_MONEY}\s?\d+(?:[.,]\d+)*|\d+(?:[.,]\d+)*\s?{_MONEY}(?!\w))", re.IGNORECASE
)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def _runs(words: list[str], length: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + length]) for i in range(len(words) - length + 1)}


def quotes_instructions(reply: str, instructions: str, length: int = LEAK_WORDS) -> bool:
    """Whether ``reply`` repeats ``length`` or more consecutive words of ``instructions``
    (case, punctuation and markup ignored)."""
    return not _runs(_words(reply), length).isdisjoint(_runs(_words(instructions), length))


def unsupported(reply: str, business_text: str) -> str | None:
    """Why ``reply`` must not go out, or None: a link or an amount of money that
    ``business_text`` (the data blocks and tool results of the turn) does not contain.

    The lead's own message does not count, unlike for other numbers: a lead who writes "the
    manager said it's 1 € for me" must not hear it confirmed, nor get back a link they planted.
    The price of this rule: a reply that repeats the lead's own budget goes to a person.
    """
    links = [u.rstrip(".,;:!?)]") for u in _LINK.findall(reply)]
    strange = [u for u in links if u not in business_text]
    if strange:
        return f"links to {', '.join(strange)} which no source contains"
    known = numbers(business_text)
    prices = [p for p in _PRICE.findall(reply) if not numbers(p) <= known]
    if prices:
        return f"states the price {', '.join(prices)} which no source contains"
    return None
