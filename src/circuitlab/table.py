"""`Table`: what every `.table()` returns — rows of plain values that print as text, render as HTML in a
notebook and convert to pandas.

It is a list of dicts (iterate it, index it, `len` it), so code that reads rows keeps working; `str(table)`
is the aligned text table, `_repr_html_` the notebook view, `to_pandas()` a DataFrame (pandas is an optional
extra: `pip install pandas`).
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

MAX_TEXT_WIDTH = 48  # longer cells are cut in the text view (the HTML view and the data keep them whole)


class Table(Sequence[dict[str, Any]]):
    """Rows (dicts) with an ordered list of columns and an optional title."""

    def __init__(
        self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, title: str | None = None
    ) -> None:
        self.rows = [dict(r) for r in rows]
        if columns is None:
            columns = list(dict.fromkeys(k for r in self.rows for k in r))
        self.columns = list(columns)
        self.title = title

    # ---- a list of dicts -------------------------------------------------------------------------
    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return Table(self.rows[i], self.columns, self.title)
        return self.rows[i]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Table):
            return self.rows == other.rows and self.columns == other.columns
        if isinstance(other, list):
            return self.rows == other
        return NotImplemented

    def column(self, name: str) -> list[Any]:
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; the columns are {self.columns}")
        return [r.get(name) for r in self.rows]

    # ---- views -----------------------------------------------------------------------------------
    def text(self, max_rows: int | None = None) -> str:
        """Aligned plain text; with `max_rows`, the first rows and a line saying how many were left out."""
        rows = self.rows if max_rows is None else self.rows[:max_rows]
        cells = [[_fmt(r.get(c), MAX_TEXT_WIDTH) for c in self.columns] for r in rows]
        widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(self.columns)]
        numeric = [all(_is_number(r.get(c)) for r in rows if r.get(c) is not None) for c in self.columns]

        def line(values: Sequence[str]) -> str:
            parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
            return "  ".join(parts).rstrip()

        lines = ([self.title] if self.title else []) + [line(self.columns)]
        lines += [line(row) for row in cells]
        if len(rows) < len(self.rows):
            lines.append(f"... {len(self.rows) - len(rows)} more rows (of {len(self.rows)})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return self.text(max_rows=20)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in self.columns) + "</tr>"
            for r in self.rows
        )
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f'<table class="circuitlab-table">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def to_pandas(self) -> Any:
        """A pandas DataFrame with the same columns (needs pandas: `pip install pandas`)."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("Table.to_pandas needs pandas, which is not installed: pip install pandas") from err
        return pd.DataFrame(self.rows, columns=self.columns)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()


class TableView:
    """Notebook views for a result with a one-line `summary()` and a `table()`: the repr (the summary, then the
    first rows), `_repr_html_` and `to_pandas`."""

    def summary(self) -> str:
        raise NotImplementedError

    def table(self) -> Table:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.summary() + "\n" + self.table().text(max_rows=16)

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.summary())}</p>" + self.table()._repr_html_()

    def to_pandas(self) -> Any:
        return self.table().to_pandas()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(value: Any, width: int | None = None) -> str:
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    elif isinstance(value, list | tuple):
        text = ", ".join(_fmt(v) for v in value)
    else:
        text = str(value)
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text
