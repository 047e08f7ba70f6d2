"""Tables in the four output formats every listing command shares: table, csv, json, markdown."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


def cell(value: Any) -> str:
    """How a value reads in a table: floats to 4 significant digits, missing as blank."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: Format, title: str | None = None
) -> RenderableType:
    """A Rich Table for `table`, else the text of the csv, json or markdown form."""
    if fmt is Format.table:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, header_style="bold")
        for col in columns:
            table.add_column(col, overflow="fold")
        for row in rows:  # Text: a value such as "[/x]" is shown, not read as markup
            table.add_row(*(Text(cell(row.get(c))) for c in columns))
        return table
    if fmt is Format.csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
        return out.getvalue().rstrip("\n")
    if fmt is Format.json:
        clean = [{c: _plain(row.get(c)) for c in columns} for row in rows]
        return json.dumps(clean, indent=2)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| " + " | ".join(cell(row.get(c)).replace("|", "\\|") for c in columns) + " |"
        for row in rows
    ]
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
