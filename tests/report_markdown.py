"""Reading report.md's tables back in tests, by column name: a test that checks how a figure is shown looks
up its cell, not a fragment of a line, so moving a column breaks only the golden files (tests/test_golden.py)."""

from __future__ import annotations

import re

_CELL_BORDER = re.compile(r"(?<!\\)\|")  # a `|` that is not escaped as `\|`


def cells(line: str) -> list[str]:
    """A table line's cells, unescaped: `| a | b\\|c |` -> ['a', 'b|c']."""
    return [cell.strip().replace("\\|", "|") for cell in _CELL_BORDER.split(line.strip())[1:-1]]


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every table of a markdown text, each a list of {column: cell}; a line whose cell count is not its
    header's fails the test (a `|` that split a cell)."""
    found, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            header, _, *body = [cells(row) for row in block]
            for row, raw in zip(body, block[2:]):
                assert len(row) == len(header), f"{len(row)} cells under a header of {len(header)}: {raw}"
            found.append([dict(zip(header, row)) for row in body])
            block = []
    return found


def table_with(text: str, column: str, after: str = "") -> list[dict[str, str]]:
    """The first table that has `column`, after the text `after` (a section's heading, say)."""
    return next(table for table in tables(text[text.index(after):]) if table and column in table[0])


def row_of(table: list[dict[str, str]], **cells: str) -> dict[str, str]:
    """The one line of `table` whose cells are `cells` (column names with spaces as underscores)."""
    [line] = [line for line in table if all(line.get(column.replace("_", " ")) == value
                                            for column, value in cells.items())]
    return line
