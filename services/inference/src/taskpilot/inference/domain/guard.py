"""The last look at a model's words before a lead reads them: they must not repeat the
assistant's instructions. Pure.

The prompt tells the model never to reveal its rules, but a lead or a knowledge document can
talk a model into anything; only this check makes sure. A reply that shares a run of
``LEAK_WORDS`` consecutive words with the system message is withheld. Eight words is longer
than any phrase a normal answer shares with the rules by chance ("someone from the team will
check" is six). A paraphrase passes: the rules are in the open-source code and hold no tenant
secret, so what the check prevents is a hijacked assistant reciting its wiring to a lead.
"""

from __future__ import annotations

import re

LEAK_WORDS = 8

_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def _runs(words: list[str], length: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + length]) for i in range(len(words) - length + 1)}


def quotes_instructions(reply: str, instructions: str, length: int = LEAK_WORDS) -> bool:
    """Whether ``reply`` repeats ``length`` or more consecutive words of ``instructions``
    (case, punctuation and markup ignored)."""
    return not _runs(_words(reply), length).isdisjoint(_runs(_words(instructions), length))
