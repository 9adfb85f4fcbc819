"""docs/configs.md is generated from config.py: every key documented, and the page current."""

from __future__ import annotations

from pathlib import Path

from maskrcnn.config_reference import field_comments, key_docs, reference_markdown

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "configs.md"


def test_every_config_key_says_what_it_means():
    undocumented = [doc.key for doc in key_docs() if not doc.meaning]
    assert not undocumented, f"add a comment beside these keys in config.py: {undocumented}"


def test_the_reference_page_is_current():
    assert REFERENCE.read_text() == reference_markdown(), (
        "docs/configs.md is stale: run `python scripts/make_config_reference.py`"
    )


def test_comments_beside_and_above_a_field_are_read():
    source = "class A:\n    # above one\n    # above two\n    x: int = 1  # beside\n    y: int = 2\n"
    comments = field_comments(source)
    assert comments[("A", "x")] == "above one above two beside"
    assert comments[("A", "y")] == ""
