"""Structure-aware chunking: sections whole when they fit, FAQ pairs never split, overlap."""

from __future__ import annotations

import itertools

from taskpilot.knowledge.chunking import Block, ChunkLimits, chunk
from taskpilot.knowledge.documents import markdown_blocks

SMALL = ChunkLimits(target_chars=120, max_chars=160, overlap_chars=50)


def test_each_section_is_one_chunk_under_its_heading_path() -> None:
    blocks = markdown_blocks(
        "# Prices\nAll prices include VAT.\n\n## Haircuts\n- Men: 20 €\n- Women: 35 €\n"
        "\n## Colour\nRoots 45 €.\n"
    )
    chunks = chunk(blocks)
    assert [(c.position, c.heading) for c in chunks] == [
        (0, "Prices"),
        (1, "Prices › Haircuts"),
        (2, "Prices › Colour"),
    ]
    assert chunks[1].text == "- Men: 20 €\n- Women: 35 €"
    assert (
        chunks[1].titled("Price list")
        == "Price list › Prices › Haircuts\n- Men: 20 €\n- Women: 35 €"
    )


def test_a_heading_is_popped_by_a_sibling_or_a_parent() -> None:
    blocks = [
        Block("heading", "A", 1),
        Block("heading", "A1", 2),
        Block("paragraph", "x"),
        Block("heading", "B", 1),
        Block("paragraph", "y"),
    ]
    assert [c.heading for c in chunk(blocks)] == ["A › A1", "B"]


def test_a_long_section_is_split_into_overlapping_windows() -> None:
    sentences = [f"Sentence number {i} says something useful." for i in range(12)]
    blocks = [Block("heading", "Long", 1), Block("paragraph", " ".join(sentences))]
    chunks = chunk(blocks, SMALL)
    assert len(chunks) > 2
    assert all(len(c.text) <= SMALL.max_chars for c in chunks)
    assert all(c.heading == "Long" for c in chunks)
    for before, after in itertools.pairwise(chunks):
        last_sentence = before.text.split(". ")[-1].rstrip(".")
        assert last_sentence in after.text  # the boundary is repeated in the next window
    joined = " ".join(c.text for c in chunks)
    assert all(s.rstrip(".") in joined for s in sentences)  # nothing lost


def test_a_question_heading_and_its_answer_stay_together_whatever_their_length() -> None:
    answer = " ".join(["We ship everywhere in mainland Portugal within three days."] * 6)
    blocks = markdown_blocks(f"# FAQ\n\n## Do you ship bikes?\n\n{answer}\n\nIt costs 30 €.\n")
    [pair] = chunk(blocks, SMALL)
    assert pair.heading == "FAQ › Do you ship bikes?"
    assert pair.text.endswith("It costs 30 €.") and answer in pair.text


def test_q_and_a_paragraphs_are_one_block() -> None:
    blocks = markdown_blocks("Q: Do you open on Sundays?\n\nA: No, we rest on Sundays.\n")
    assert blocks == [Block("qa", "Q: Do you open on Sundays?\nA: No, we rest on Sundays.")]


def test_a_word_longer_than_a_window_is_cut() -> None:
    blocks = [Block("paragraph", "https://example.com/" + "a" * 400)]
    chunks = chunk(blocks, SMALL)
    assert all(len(c.text) <= SMALL.max_chars for c in chunks)
    assert "".join(c.text.replace(" ", "") for c in chunks).count("a") >= 400


def test_no_text_no_chunks() -> None:
    assert chunk([Block("heading", "Only a title", 1)]) == []
