"""From uploaded bytes to blocks: type detection and text extraction (PDF, Markdown, HTML, text).

Everything here works on bytes in memory; every way an upload can be unusable ends in one of
the named :class:`~taskpilot.knowledge.domain.DocumentRejectedError` subclasses.
"""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import PurePosixPath

from pypdf import PdfReader
from pypdf.errors import DependencyError, PyPdfError

from taskpilot.knowledge.chunking import Block
from taskpilot.knowledge.domain import (
    CorruptDocumentError,
    EmptyDocumentError,
    EncryptedDocumentError,
    NoExtractableTextError,
    UnsupportedDocumentError,
)

PDF = "application/pdf"
MARKDOWN = "text/markdown"
HTML = "text/html"
TEXT = "text/plain"
_BY_TYPE = {
    PDF: PDF,
    "application/x-pdf": PDF,
    MARKDOWN: MARKDOWN,
    "text/x-markdown": MARKDOWN,
    HTML: HTML,
    "application/xhtml+xml": HTML,
    TEXT: TEXT,
}
_BY_SUFFIX = {
    ".pdf": PDF,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".txt": TEXT,
    ".text": TEXT,
}
SUPPORTED = "PDF, Markdown (.md), HTML (.html) or plain text (.txt)"


def media_type(filename: str, content_type: str, data: bytes) -> str:
    """The document's type from its declared content type, else its file name."""
    declared = content_type.split(";")[0].strip().lower()
    kind = _BY_TYPE.get(declared) or _BY_SUFFIX.get(PurePosixPath(filename.lower()).suffix)
    if kind is None and data.startswith(b"%PDF-"):
        kind = PDF
    if kind is None:
        raise UnsupportedDocumentError(
            f"unsupported type {declared or 'unknown'!s} ({filename or 'no name'}): "
            f"upload {SUPPORTED}"
        )
    return kind


def extract(data: bytes, kind: str) -> list[Block]:
    """Blocks of text of a document; refuses empty, corrupt, encrypted and textless files."""
    if not data:
        raise EmptyDocumentError("the file is empty")
    if kind == PDF:
        blocks = _plain_blocks(_pdf_text(data))
    else:
        text = _decode(data)
        if kind == MARKDOWN:
            blocks = markdown_blocks(text)
        elif kind == HTML:
            blocks = html_blocks(text)
        else:
            blocks = _plain_blocks(text)
    if not any(b.kind != "heading" and b.text.strip() for b in blocks):
        raise NoExtractableTextError("no extractable text in the document")
    return blocks


def _decode(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise CorruptDocumentError("binary data where text was expected")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _pdf_text(data: bytes) -> str:
    if not data.startswith(b"%PDF-"):
        raise CorruptDocumentError("not a PDF file (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _opens_without_password(reader):
            raise EncryptedDocumentError("the PDF is password-protected; upload it unprotected")
        pages = [page.extract_text() or "" for page in reader.pages]
    except (EncryptedDocumentError, CorruptDocumentError):
        raise
    except DependencyError as exc:
        raise EncryptedDocumentError(f"the PDF's encryption is not supported: {exc}") from exc
    except (PyPdfError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise CorruptDocumentError(f"the PDF cannot be read: {type(exc).__name__}") from exc
    except RecursionError as exc:
        raise CorruptDocumentError("the PDF cannot be read: malformed object tree") from exc
    return "\n\n".join(pages)


def _opens_without_password(reader: PdfReader) -> bool:
    # Many PDFs carry only an owner password (print/copy limits) and open with an empty one.
    try:
        return bool(reader.decrypt(""))
    except (PyPdfError, ValueError, NotImplementedError):
        return False


# -- plain text (and text extracted from PDFs) ------------------------------------------------

_TERMINAL = re.compile(r"[.,;:!?…)\]]$")


def _looks_like_heading(line: str) -> bool:
    line = line.strip()
    return (
        0 < len(line) <= 80
        and not _TERMINAL.search(line)
        and any(c.isalpha() for c in line)
        and not line.startswith(("-", "*", "•"))
    )


def _plain_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    for para in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [line.strip() for line in para.strip().split("\n") if line.strip()]
        if not lines:
            continue
        if _looks_like_heading(lines[0]) and (len(lines) > 1 or lines[0].isupper()):
            blocks.append(Block("heading", lines[0], 1 if lines[0].isupper() else 2))
            lines = lines[1:]
        if lines:
            body = "\n".join(lines)
            blocks.append(Block("paragraph", re.sub(r"-\n(?=[a-z])", "", body)))
    return _pair_questions(blocks)


_QUESTION = re.compile(r"^(?:\*\*)?(?:Q|Question|P|Pregunta|Pergunta)\s*[:.]", re.IGNORECASE)
_ANSWER = re.compile(r"^(?:\*\*)?(?:A|Answer|R|Respuesta|Resposta)\s*[:.]", re.IGNORECASE)


def _pair_questions(blocks: list[Block]) -> list[Block]:
    """``Q: …`` followed by ``A: …`` becomes one question-and-answer block, never split."""
    out: list[Block] = []
    for block in blocks:
        previous = out[-1] if out else None
        if (
            previous is not None
            and previous.kind == "paragraph"
            and _QUESTION.match(previous.text)
            and block.kind == "paragraph"
            and _ANSWER.match(block.text)
        ):
            out[-1] = Block("qa", f"{previous.text}\n{block.text}")
        else:
            out.append(block)
    return out


# -- markdown -------------------------------------------------------------------------------

_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^(=+|-+)\s*$")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|`)(?=\S)(.+?)(?<=\S)\1")


def _inline(text: str) -> str:
    return _EMPHASIS.sub(r"\2", _LINK.sub(r"\1", text))


def markdown_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    para: list[str] = []
    fence = False

    def flush() -> None:
        if para:
            blocks.append(Block("paragraph", _inline("\n".join(para))))
            para.clear()

    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.rstrip()
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
            continue
        heading = None if fence else _ATX.match(line)
        if heading:
            flush()
            blocks.append(Block("heading", _inline(heading.group(2)), len(heading.group(1))))
        elif not fence and _SETEXT.match(line) and len(para) == 1:
            title = para.pop()
            blocks.append(Block("heading", _inline(title), 1 if line.startswith("=") else 2))
        elif not line.strip():
            flush()
        else:
            para.append(line.strip())
    flush()
    return _pair_questions(blocks)


# -- html -------------------------------------------------------------------------------------

_SKIP = {"script", "style", "nav", "footer", "header", "noscript", "template", "head", "svg"}
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BREAKS = {"p", "div", "section", "article", "main", "br", "tr", "table", "blockquote", "pre"}
_ITEMS = {"li", "dt", "dd"}
_LISTS = {"ul", "ol", "dl"}


class _HtmlBlocks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._skip = 0
        self._text: list[str] = []
        self._items: list[str] = []
        self._heading: int | None = None

    def _flush_text(self) -> str:
        text = re.sub(r"\s+", " ", "".join(self._text)).strip()
        self._text.clear()
        return text

    def _flush_paragraph(self) -> None:
        text = self._flush_text()
        if text:
            self.blocks.append(Block("paragraph", text))

    def _flush_list(self) -> None:
        self._flush_item()
        if self._items:
            self.blocks.append(Block("paragraph", "\n".join(f"- {i}" for i in self._items)))
            self._items.clear()

    def _flush_item(self) -> None:
        text = self._flush_text()
        if text:
            self._items.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag in _HEADINGS:
            self._flush_list()
            self._flush_paragraph()
            self._heading = _HEADINGS[tag]
        elif tag in _ITEMS:
            self._flush_item()
        elif tag in _LISTS:
            self._flush_paragraph()
        elif tag in _BREAKS and not self._items:
            self._flush_paragraph()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _HEADINGS and self._heading is not None:
            text = self._flush_text()
            if text:
                self.blocks.append(Block("heading", text, self._heading))
            self._heading = None
        elif tag in _ITEMS:
            self._flush_item()
        elif tag in _LISTS:
            self._flush_list()
        elif tag in _BREAKS and not self._items:
            self._flush_paragraph()

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._text.append(data)

    def close(self) -> None:
        super().close()
        self._flush_list()
        self._flush_paragraph()


def html_blocks(text: str) -> list[Block]:
    parser = _HtmlBlocks()
    parser.feed(text)
    parser.close()
    return parser.blocks
