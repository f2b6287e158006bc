"""HTML building blocks of the report: escaping, plain sortable tables, and the page's inlined
style and scripts (``difffit_screen/web/``)."""

from __future__ import annotations

import html
from functools import cache
from importlib import resources

__all__ = ["esc", "simple_table_html", "web_asset"]


def esc(value) -> str:
    """HTML-escape ``str(value)``."""
    return html.escape(str(value), quote=True)


@cache
def web_asset(name: str) -> str:
    """The text of ``difffit_screen/web/<name>`` (a script or style inlined into the page)."""
    return resources.files("difffit_screen").joinpath("web", name).read_text(encoding="utf-8")


def simple_table_html(rows: list[dict], columns: list[str], table_id: str) -> str:
    """A plain table of dict rows, sortable by a click on a header (``web/sortable_table.js``);
    ``<p>None.</p>`` when there are no rows."""
    if not rows:
        return "<p>None.</p>"
    head = "".join(f'<th class="text">{esc(c)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="text">{esc("" if r.get(c) is None else r.get(c))}</td>'
                         for c in columns) + "</tr>" for r in rows)
    return (f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")
