"""Markdown table lines for report.md: every cell escaped, so a value holding `|` (a `--model-arg`, an error
message, an XLA flag) stays in its cell instead of splitting it."""

from __future__ import annotations


def cell(text: object) -> str:
    """A table cell's text: `|` escaped as `\\|` (GitHub's tables, code spans in a cell included), line
    breaks folded to spaces."""
    return " ".join(str(text).replace("|", "\\|").splitlines())


def line(*cells: object) -> str:
    """One table line: `| a | b |`."""
    return "| " + " | ".join(cell(text) for text in cells) + " |"


def head(*columns: object) -> list[str]:
    """A table's header line and the line under it."""
    return [line(*columns), line(*["---"] * len(columns))]
