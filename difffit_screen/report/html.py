"""HTML building blocks of the report: escaping, links, JSON in ``<script>`` elements, plain
sortable tables, and the page's inlined style and scripts (``difffit_screen/web/``).

Every text from the results (names, sources, messages) is HTML-escaped (:func:`esc`); only
``http``/``https`` URLs become links (:func:`web_url`: a ``javascript:`` or ``data:`` URL from a
library store is shown as text); JSON inside a ``<script>`` element has ``<``, ``>`` and ``&``
escaped (:func:`script_json`), so that no text in it (``</script>``, ``<!--``) can end or bend
the element.
"""

from __future__ import annotations

import html
import json
from functools import cache
from importlib import resources
from urllib.parse import urlsplit

__all__ = ["esc", "script_json", "simple_table_html", "web_asset", "web_url"]


def esc(value) -> str:
    """HTML-escape ``str(value)``."""
    return html.escape(str(value), quote=True)


def web_url(url) -> str | None:
    """``url`` when it is an ``http``/``https`` URL with a host (a link may point there), else
    None (``javascript:``, ``data:``, relative or malformed URLs never become links)."""
    if not isinstance(url, str) or url != url.strip() or any(ord(c) < 0x20 for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def script_json(value, **kw) -> str:
    """``value`` as JSON for the inside of a ``<script>`` element: ``<``, ``>`` and ``&`` written
    as ``\\u003c``, ``\\u003e``, ``\\u0026`` (the same JSON once parsed)."""
    text = json.dumps(value, **kw)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


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
