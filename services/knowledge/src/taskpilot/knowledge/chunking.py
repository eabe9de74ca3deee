"""Structure-aware chunking. Pure: blocks of a document in, chunks out.

A document arrives as blocks (headings, paragraphs, question/answer pairs). Chunks follow its
sections: a heading is never separated from its text, a section that fits in one chunk stays
whole, a question and its answer are one chunk whatever their length, and a longer section is
packed paragraph by paragraph into windows that repeat the end of the previous window
(overlap), so a fact cut at a boundary is still found with its context.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


@dataclass(frozen=True)
class Block:
    kind: Literal["heading", "paragraph", "qa"]
    text: str
    level: int = 0


@dataclass(frozen=True)
class Chunk:
    position: int
    heading: str
    text: str

    def titled(self, title: str) -> str:
        """The text to embed: where it sits in the document, then what it says."""
        context = " › ".join(p for p in (title, self.heading) if p)
        return f"{context}\n{self.text}" if context else self.text


@dataclass(frozen=True)
class ChunkLimits:
    target_chars: int = 800
    max_chars: int = 1200
    overlap_chars: int = 160


@dataclass
class _Section:
    path: tuple[str, ...]
    blocks: list[Block] = field(default_factory=list)


def sections(blocks: Iterable[Block]) -> Iterator[_Section]:
    """Group blocks under their heading path (``Prices > Colour``)."""
    stack: list[tuple[int, str]] = []
    current = _Section(())
    for block in blocks:
        if block.kind != "heading":
            current.blocks.append(block)
            continue
        if current.blocks:
            yield current
        while stack and stack[-1][0] >= block.level:
            stack.pop()
        stack.append((block.level, block.text.strip()))
        current = _Section(tuple(text for _, text in stack))
    if current.blocks:
        yield current


def chunk(blocks: Iterable[Block], limits: ChunkLimits | None = None) -> list[Chunk]:
    limits = limits or ChunkLimits()
    chunks: list[Chunk] = []
    for section in sections(blocks):
        heading = " › ".join(section.path)
        if section.path and section.path[-1].endswith("?"):  # a question heading: FAQ pair
            section.blocks = [Block("qa", "\n\n".join(b.text.strip() for b in section.blocks))]
        for text in _section_windows(section.blocks, limits):
            chunks.append(Chunk(len(chunks), heading, text))
    return chunks


def _section_windows(blocks: list[Block], limits: ChunkLimits) -> Iterator[str]:
    pieces: list[str] = []
    for block in blocks:
        text = block.text.strip()
        if not text:
            continue
        if block.kind == "qa" or len(text) <= limits.target_chars:
            pieces.append(text)
        else:
            pieces.extend(_split_long(text, limits.target_chars))
    whole = "\n\n".join(pieces)
    if len(whole) <= limits.max_chars:
        if whole:
            yield whole
        return
    window: list[str] = []
    size = 0
    for piece in pieces:
        if window and size + len(piece) > limits.target_chars:
            yield "\n\n".join(window)
            window = _overlap(window, limits.overlap_chars)
            size = sum(len(p) + 2 for p in window)
        window.append(piece)
        size += len(piece) + 2
    if window:
        yield "\n\n".join(window)


def _overlap(window: list[str], budget: int) -> list[str]:
    """The tail of the previous window to repeat: whole sentences, at most ``budget`` chars."""
    if budget <= 0:
        return []
    sentences = _SENTENCE_END.split(window[-1])
    tail: list[str] = []
    size = 0
    for sentence in reversed(sentences):
        if size + len(sentence) > budget:
            break
        tail.insert(0, sentence)
        size += len(sentence) + 1
    return [" ".join(tail)] if tail else []


def _split_long(text: str, target: int) -> list[str]:
    """A paragraph longer than a window: split at sentence ends, then at spaces."""
    parts: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        for piece in _hard_wrap(sentence, target):
            if current and len(current) + 1 + len(piece) > target:
                parts.append(current)
                current = piece
            else:
                current = f"{current} {piece}".strip()
    if current:
        parts.append(current)
    return parts


def _hard_wrap(sentence: str, target: int) -> list[str]:
    if len(sentence) <= target:
        return [sentence]
    words, lines, line = sentence.split(), [], ""
    for word in words:
        while len(word) > target:  # a "word" with no spaces at all (a URL, a hash)
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:target])
            word = word[target:]
        if line and len(line) + 1 + len(word) > target:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(line)
    return lines
