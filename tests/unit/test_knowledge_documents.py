"""From bytes to blocks: type detection, Markdown/HTML/text structure, PDFs good and bad."""

from __future__ import annotations

import pytest

from taskpilot.knowledge.chunking import Block
from taskpilot.knowledge.documents import HTML, MARKDOWN, PDF, TEXT, extract, media_type
from taskpilot.knowledge.domain import (
    CorruptDocumentError,
    EmptyDocumentError,
    EncryptedDocumentError,
    NoExtractableTextError,
    UnsupportedDocumentError,
)
from tests.integration.knowledge.samples import pdf


@pytest.mark.parametrize(
    ("filename", "content_type", "data", "expected"),
    [
        ("a.md", "", b"# x", MARKDOWN),
        ("a.bin", "text/markdown; charset=utf-8", b"# x", MARKDOWN),
        ("a.HTM", "application/octet-stream", b"<p>x", HTML),
        ("a.txt", "", b"x", TEXT),
        ("scan", "", b"%PDF-1.4 ...", PDF),
        ("a.pdf", "", b"", PDF),
    ],
)
def test_the_type_comes_from_the_content_type_the_name_or_the_magic(
    filename: str, content_type: str, data: bytes, expected: str
) -> None:
    assert media_type(filename, content_type, data) == expected


def test_an_unknown_type_is_refused_with_what_is_supported() -> None:
    with pytest.raises(UnsupportedDocumentError, match="PDF, Markdown"):
        media_type("deck.pptx", "application/vnd.ms-powerpoint", b"PK")


def test_markdown_keeps_headings_and_strips_inline_markup() -> None:
    blocks = extract(
        b"Title\n=====\n\nSee [our site](https://x.example) for **bold** offers.\n\n"
        b"```\n# not a heading\n```\n### Small\ntext\n",
        MARKDOWN,
    )
    assert blocks[0] == Block("heading", "Title", 1)
    assert blocks[1] == Block("paragraph", "See our site for bold offers.")
    assert Block("heading", "Small", 3) in blocks
    assert all("not a heading" not in b.text or b.kind == "paragraph" for b in blocks)


def test_html_drops_scripts_and_navigation_and_keeps_lists_together() -> None:
    blocks = extract(
        b"<html><head><title>t</title><script>evil()</script></head><body><nav>Home</nav>"
        b"<h2>Hours</h2><ul><li>Mon 9-19</li><li>Sat 10-14</li></ul><p>Closed on Sunday.</p>"
        b"<footer>(c)</footer></body></html>",
        HTML,
    )
    assert blocks == [
        Block("heading", "Hours", 2),
        Block("paragraph", "- Mon 9-19\n- Sat 10-14"),
        Block("paragraph", "Closed on Sunday."),
    ]


def test_plain_text_finds_headings_by_shape() -> None:
    blocks = extract(b"OPENING HOURS\n\nWe open at nine.\n\nPrices\nA cut is 20 euros.\n", TEXT)
    assert blocks == [
        Block("heading", "OPENING HOURS", 1),
        Block("paragraph", "We open at nine."),
        Block("heading", "Prices", 2),
        Block("paragraph", "A cut is 20 euros."),
    ]


def test_text_in_another_encoding_is_still_read() -> None:
    assert extract("Peluquería".encode("cp1252"), TEXT)[0].text == "Peluquería"


def test_a_pdf_gives_its_text() -> None:
    blocks = extract(pdf([["Winter hours", "We open at 10:00."], ["Page two text."]]), PDF)
    text = "\n".join(b.text for b in blocks)
    assert "We open at 10:00." in text and "Page two text." in text


def test_a_pdf_protected_only_against_editing_opens() -> None:
    from io import BytesIO

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(BytesIO(pdf([["Open to read."]]))))
    writer.encrypt(user_password="", owner_password="owner-only")
    out = BytesIO()
    writer.write(out)
    assert "Open to read." in extract(out.getvalue(), PDF)[0].text


@pytest.mark.parametrize(
    ("data", "kind", "error"),
    [
        (b"", MARKDOWN, EmptyDocumentError),
        (b"", PDF, EmptyDocumentError),
        (b"not a pdf", PDF, CorruptDocumentError),
        (b"%PDF-1.7\ngarbage without objects", PDF, CorruptDocumentError),
        (pdf([["x"]], password="pw"), PDF, EncryptedDocumentError),
        (pdf([[]]), PDF, NoExtractableTextError),
        (b"<script>1</script>", HTML, NoExtractableTextError),
        (b"# Only a heading\n", MARKDOWN, NoExtractableTextError),
        (b"\x00\x00binary", TEXT, CorruptDocumentError),
    ],
)
def test_unusable_files_are_refused_by_name(data: bytes, kind: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        extract(data, kind)


def test_a_truncated_pdf_is_corrupt() -> None:
    good = pdf([["Some text here."]])
    with pytest.raises((CorruptDocumentError, NoExtractableTextError)):
        extract(good[: len(good) // 3], PDF)
