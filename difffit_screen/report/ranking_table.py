"""The report's full ranking: a paged, searchable, sortable table that stays light at 100,000 rows.

The ranking is embedded once, compactly: the shown columns as columnar JSON (floats rounded to
4 significant digits, p/q-values to 3, repeated strings such as organisms dictionary-encoded),
gzipped and base64-encoded in a ``<script type="application/octet-stream">`` element. The page
unpacks it with the browser's ``DecompressionStream`` (Chromium 80+, Firefox 113+, Safari 16.4+)
and draws only the current page of rows (:data:`PAGE_SIZE` by default), so the DOM holds a few
dozen rows whatever the screen's size; sorting and filtering work on the columns in memory. The
first page is also written as plain HTML rows, so the table reads (and prints) without
JavaScript. The full ranking is written next to the page as ``ranking.tsv`` (every row, more
columns) and the Parquet tables are linked for download.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
from pathlib import Path

import pyarrow as pa

from ..outputs import atomic_write, escape_line
from .html import esc, web_url
from .results import Q_HIT

__all__ = ["PAGE_SIZE", "TABLE_COLUMNS", "TSV_COLUMNS", "ranking_section_html",
           "write_ranking_tsv"]

TABLE_COLUMNS = ("rank", "candidate", "name", "organism", "score", "zscore", "qvalue", "hits",
                 "n_residues", "inside_fraction", "fit_ok", "n_starts", "n_clusters", "n_atoms",
                 "mean_density", "pvalue", "gene", "residue_ranges")
"""Columns of the report's ranking table, in order (``name`` links to ``url``)."""

TSV_COLUMNS = (*TABLE_COLUMNS, "taxid", "url", "accession", "parent", "source", "matrix")
"""Columns of ``report/ranking.tsv`` (``matrix``: the pose, 12 comma-separated numbers)."""

SEARCH_COLUMNS = ("candidate", "name", "organism", "gene")
"""Columns the search box looks in (case-insensitive substring)."""

TEXT_COLUMNS = {"candidate", "name", "organism", "gene", "residue_ranges"}
PAGE_SIZE = 50
"""Rows of the ranking table's first page (the reader can choose 25 to 500)."""


def round_value(name: str, value):
    """A value as stored in the page: floats to 4 (p/q: 3) significant digits, None for NaN."""
    if value is None:
        return None
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.3g}") if name in ("pvalue", "qvalue") else float(f"{value:.4g}")
    return value


def format_cell(name: str, value) -> tuple[str, str]:
    """Return ``(text, data-value)`` for one table cell of column ``name``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "", ""
    if isinstance(value, bool):
        return ("yes" if value else "no"), ("1" if value else "0")
    if name in ("pvalue", "qvalue"):
        return f"{value:.3g}", repr(float(value))
    if isinstance(value, float):
        return f"{value:.4f}" if name != "zscore" else f"{value:.2f}", repr(float(value))
    return str(value), str(value)


def encode_column(name: str, values: list) -> dict | list:
    """One column for the page: a plain list, or ``{"dict": [...], "codes": [...]}`` for text
    columns with few distinct values (null code -1)."""
    values = [round_value(name, v) for v in values]
    if name in TEXT_COLUMNS and values:
        distinct = {v for v in values if v is not None}
        if len(distinct) < 0.5 * len(values):
            words = sorted(distinct)
            code = {w: i for i, w in enumerate(words)}
            return {"dict": words, "codes": [-1 if v is None else code[v] for v in values]}
    return values


def table_payload(ranking: pa.Table, models: dict[str, tuple[str, str]]) -> str:
    """The embedded ranking: base64 of gzipped columnar JSON.

    ``models`` maps a candidate to ``(href, colour)`` of its exported model (top hits; href
    None when the model could not be exported).
    """
    cols = {c: ranking.column(c).to_pylist() if c in ranking.column_names
            else [None] * ranking.num_rows for c in (*TABLE_COLUMNS, "url")}
    cols["url"] = [web_url(u) for u in cols["url"]]  # only http(s) URLs become links
    doc = {"n": ranking.num_rows, "columns": list(TABLE_COLUMNS),
           "text": sorted(TEXT_COLUMNS), "search": list(SEARCH_COLUMNS), "q_hit": Q_HIT,
           "floats": [c for c in TABLE_COLUMNS if c in ranking.column_names
                      and pa.types.is_floating(ranking.schema.field(c).type)],
           "data": {c: encode_column(c, v) for c, v in cols.items()},
           "models": {k: list(v) for k, v in models.items()}}
    raw = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def name_cell(row: dict) -> str:
    """The name, linked to the candidate's page when known."""
    name = row.get("name")
    if not name:
        return ""
    url = web_url(row.get("url"))
    if url:
        return f'<a href="{esc(url)}" target="_blank" rel="noopener">{esc(name)}</a>'
    return esc(name)


def header_html(docs: dict[str, str]) -> str:
    """The table's header row (a tooltip per column)."""
    return "".join(
        f'<th class="{"text" if c in TEXT_COLUMNS else ""}" data-key="{c}" '
        f'title="{esc(docs.get(c, c))}">{esc(c)}</th>' for c in (*TABLE_COLUMNS, "model"))


def model_cell(model: tuple[str | None, str] | None) -> str:
    """A top hit's exported model (its rank colour and link), or 'not exported'."""
    if model is None:
        return ""
    if not model[0]:
        return '<span class="error">not exported</span>'
    return (f'<span class="swatch" style="background:{esc(model[1])}"></span> '
            f'<a href="{esc(model[0])}">{esc(Path(model[0]).name)}</a>')


def static_rows_html(rows: list[dict], models: dict[str, tuple[str, str]]) -> str:
    """Plain HTML rows (the first page, for readers without JavaScript and for printing)."""
    body = []
    for row in rows:
        cells = []
        for c in TABLE_COLUMNS:
            text, value = format_cell(c, row.get(c))
            cls = ' class="text"' if c in TEXT_COLUMNS else ""
            inner = name_cell(row) if c == "name" else esc(text)
            cells.append(f'<td{cls} data-value="{esc(value)}">{inner}</td>')
        cells.append(f'<td class="text">{model_cell(models.get(row["candidate"]))}</td>')
        hit = row.get("qvalue") is not None and row["qvalue"] < Q_HIT
        tr = '<tr class="hit">' if hit else "<tr>"
        body.append(f"{tr}{''.join(cells)}</tr>")
    return "".join(body)


def ranking_section_html(ranking: pa.Table, models: dict[str, tuple[str, str]],
                         docs: dict[str, str], downloads: list[tuple[str, str]]) -> str:
    """The ranking section: search box, pager, table (first page static) and its data."""
    first = ranking.slice(0, PAGE_SIZE).to_pylist()
    links = " · ".join(f'<a href="{esc(href)}" download>{esc(label)}</a>'
                       for label, href in downloads)
    return f"""
<div class="table-tools">
<input type="search" id="ranking-search" placeholder="search candidate, name, organism, gene"
 size="40" aria-label="search the ranking">
<button id="ranking-prev">&larr; previous</button>
<span id="ranking-status">rows 1&ndash;{len(first)} of {ranking.num_rows}</span>
<button id="ranking-next">next &rarr;</button>
<label>rows per page <select id="ranking-page-size">
<option>25</option><option selected>{PAGE_SIZE}</option><option>100</option>
<option>500</option></select></label>
<button id="ranking-export">download shown rows (TSV)</button>
</div>
<p class="downloads">Full tables: {links}</p>
<table class="paged" id="ranking"><thead><tr>{header_html(docs)}</tr></thead>
<tbody>{static_rows_html(first, models)}</tbody></table>
<script type="application/octet-stream" id="ranking-data">{table_payload(ranking, models)}</script>
"""


def write_ranking_tsv(ranking: pa.Table, path: Path) -> Path:
    """Every row of the ranking as TSV (:data:`TSV_COLUMNS`), for spreadsheets."""
    cols = [c for c in TSV_COLUMNS if c in ranking.column_names]
    data = {c: ranking.column(c).to_pylist() for c in cols}
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\t".join(cols) + "\n")
        for i in range(ranking.num_rows):
            fh.write("\t".join(_tsv(data[c][i]) for c in cols) + "\n")
    return path


def _tsv(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ",".join(_tsv(v) for v in value)
    return escape_line(value)

