"""A self-contained offline HTML page: headings, text, tables and Plotly figures.

plotly.js is inlined once from the installed `plotly` package (never a CDN), so the file opens with no
network. Reports and studies build on this; figures come from `circuitlab.viz`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import atomic_write_text

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; }
th { background: #f6f6f6; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
.pass { color: #1a7f37; font-weight: bold; } .fail { color: #cf222e; font-weight: bold; }
.figure { margin: 1em 0; }
"""


def _cell(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    css = {"PASS": "pass", "FAIL": "fail"}.get(text)
    return f'<td class="{css}">{html.escape(text)}</td>' if css else f"<td>{html.escape(text)}</td>"


@dataclass
class Page:
    """An HTML document built section by section, then written atomically with `save`."""

    title: str
    parts: list[str] = field(default_factory=list)
    _has_plotly: bool = False

    def heading(self, text: str, level: int = 2) -> Page:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        return self

    def text(self, text: str) -> Page:
        """A paragraph of plain text (escaped); blank lines start new paragraphs."""
        for para in text.strip().split("\n\n"):
            self.parts.append(f"<p>{html.escape(para)}</p>")
        return self

    def code(self, text: str) -> Page:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")
        return self

    def data(self, obj: Any) -> Page:
        """Any JSON-serialisable object, pretty-printed."""
        return self.code(json.dumps(obj, indent=2, default=str))

    def details(self, summary: str, obj: Any) -> Page:
        """A collapsed section (HTML <details>) holding a JSON-serialisable object, pretty-printed."""
        body = html.escape(json.dumps(obj, indent=2, default=str))
        self.parts.append(f"<details><summary>{html.escape(summary)}</summary><pre>{body}</pre></details>")
        return self

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Page:
        """A table from a list of dicts or a `circuitlab.table.Table` (columns default to its columns, or the
        first row's keys)."""
        if not rows:
            return self.text("(no rows)")
        columns = list(columns or getattr(rows, "columns", None) or rows[0].keys())
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = "".join("<tr>" + "".join(_cell(row.get(c, "")) for c in columns) + "</tr>" for row in rows)
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        return self

    def figure(self, fig: Any, caption: str | None = None) -> Page:
        """A Plotly figure, interactive; plotly.js itself is inlined once at save time."""
        self._has_plotly = True
        div = fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.parts.append(f'<figure class="figure">{div}{cap}</figure>')
        return self

    def raw_html(self, fragment: str) -> Page:
        """A trusted HTML fragment (built by circuitlab, never from user text)."""
        self.parts.append(fragment)
        return self

    def include(self, other: Page) -> Page:
        """Append another page's sections (its title is dropped)."""
        self.parts.extend(other.parts)
        self._has_plotly = self._has_plotly or other._has_plotly
        return self

    def render(self) -> str:
        script = ""
        if self._has_plotly:
            from plotly.offline import get_plotlyjs

            script = f'<script type="text/javascript">{get_plotlyjs()}</script>'
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style>{script}</head>"
            f"<body><h1>{html.escape(self.title)}</h1>\n" + "\n".join(self.parts) + "\n</body></html>\n"
        )

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.render())
