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
import html
import json
import math
from pathlib import Path

import pyarrow as pa

TABLE_COLUMNS = ("rank", "candidate", "name", "organism", "score", "zscore", "qvalue", "hits",
                 "n_residues", "inside_fraction", "fit_ok", "n_starts", "n_clusters", "n_atoms",
                 "mean_density", "pvalue", "gene", "residue_ranges")
"""Columns of the report's ranking table, in order (``name`` links to ``url``)."""

TSV_COLUMNS = (*TABLE_COLUMNS, "taxid", "url", "accession", "parent", "source")
"""Columns of ``report/ranking.tsv``."""

SEARCH_COLUMNS = ("candidate", "name", "organism", "gene")
"""Columns the search box looks in (case-insensitive substring)."""

TEXT_COLUMNS = {"candidate", "name", "organism", "gene", "residue_ranges"}
PAGE_SIZE = 50
Q_HIT = 0.05


def esc(value) -> str:
    """HTML-escape ``str(value)``."""
    return html.escape(str(value), quote=True)


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
    if row.get("url"):
        return f'<a href="{esc(row["url"])}" target="_blank" rel="noopener">{esc(name)}</a>'
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
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\t".join(cols) + "\n")
        for i in range(ranking.num_rows):
            fh.write("\t".join(_tsv(data[c][i]) for c in cols) + "\n")
    tmp.replace(path)
    return path


def _tsv(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("\t", " ").replace("\n", " ")


TABLE_JS = """
(function () {
  var table = document.getElementById('ranking');
  var holder = document.getElementById('ranking-data');
  if (!table || !holder) { return; }
  var status = document.getElementById('ranking-status');
  function note(text) { status.textContent = text; }
  if (typeof DecompressionStream === 'undefined') {
    note('first rows only: this browser cannot unpack the full table (see ranking.tsv)');
    return;
  }
  var bytes = Uint8Array.from(atob(holder.textContent.trim()), function (c) { return c.charCodeAt(0); });
  var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  new Response(stream).text().then(function (text) { start(JSON.parse(text)); })
    .catch(function (err) { note('cannot read the table: ' + err); });

  function start(doc) {
    var n = doc.n, cols = {}, names = doc.columns, isText = {};
    doc.text.forEach(function (c) { isText[c] = true; });
    Object.keys(doc.data).forEach(function (c) {
      var d = doc.data[c];
      if (d && d.dict) {
        cols[c] = d.codes.map(function (k) { return k < 0 ? null : d.dict[k]; });
      } else { cols[c] = d; }
    });
    var haystack = new Array(n);
    for (var i = 0; i < n; i++) {
      haystack[i] = doc.search.map(function (c) { return cols[c][i] || ''; }).join('\\u0001').toLowerCase();
    }
    var order = new Int32Array(n);
    for (var i = 0; i < n; i++) { order[i] = i; }
    var shown = order, page = 0, size = parseInt(document.getElementById('ranking-page-size').value, 10);
    var sortKey = null, asc = true;
    var body = table.tBodies[0];
    var isFloat = {};
    doc.floats.forEach(function (c) { isFloat[c] = true; });
    function fmt(c, v) {
      if (v === null || v === undefined) { return ['', '']; }
      if (c === 'fit_ok') { return [v ? 'yes' : 'no', v ? '1' : '0']; }
      if (c === 'pvalue' || c === 'qvalue') { return [String(Number(v.toPrecision(3))), String(v)]; }
      if (c === 'zscore') { return [v.toFixed(2), String(v)]; }
      if (isFloat[c]) { return [v.toFixed(4), String(v)]; }
      return [String(v), String(v)];
    }
    function esc(s) {
      return String(s).replace(/[&<>"']/g, function (ch) {
        return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[ch];
      });
    }
    function draw() {
      var pages = Math.max(1, Math.ceil(shown.length / size));
      page = Math.min(Math.max(page, 0), pages - 1);
      var start = page * size, end = Math.min(shown.length, start + size), html = [];
      for (var k = start; k < end; k++) {
        var i = shown[k], q = cols.qvalue[i], cells = [];
        names.forEach(function (c) {
          var f = fmt(c, cols[c][i]), inner = esc(f[0]);
          if (c === 'name' && f[0] && cols.url[i]) {
            inner = '<a href="' + esc(cols.url[i]) + '" target="_blank" rel="noopener">' + inner + '</a>';
          }
          cells.push('<td' + (isText[c] ? ' class="text"' : '') + ' data-value="' + esc(f[1]) + '">' + inner + '</td>');
        });
        var m = doc.models[cols.candidate[i]];
        var cell = !m ? '' : (!m[0] ? '<span class="error">not exported</span>' :
          '<span class="swatch" style="background:' + esc(m[1]) + '"></span> <a href="' +
          esc(m[0]) + '">' + esc(m[0].split('/').pop()) + '</a>');
        cells.push('<td class="text">' + cell + '</td>');
        html.push((q !== null && q < doc.q_hit ? '<tr class="hit">' : '<tr>') + cells.join('') + '</tr>');
      }
      body.innerHTML = html.join('');
      note(shown.length ? 'rows ' + (start + 1) + '\\u2013' + end + ' of ' + shown.length +
           (shown.length < n ? ' (filtered from ' + n + ')' : '') : 'no matching rows (of ' + n + ')');
      document.getElementById('ranking-prev').disabled = page === 0;
      document.getElementById('ranking-next').disabled = page >= pages - 1;
    }
    function compare(c) {
      var v = cols[c];
      return function (a, b) {
        var x = v[a], y = v[b];
        if (x === null || x === undefined) { return (y === null || y === undefined) ? a - b : 1; }
        if (y === null || y === undefined) { return -1; }
        var r = x < y ? -1 : (x > y ? 1 : 0);
        return (asc ? r : -r) || a - b;
      };
    }
    function apply() {
      var query = document.getElementById('ranking-search').value.trim().toLowerCase();
      var base = order;
      if (sortKey !== null) { base = Int32Array.from(order).sort(compare(sortKey)); }
      if (query) {
        var terms = query.split(/\\s+/);
        shown = base.filter(function (i) {
          return terms.every(function (t) { return haystack[i].indexOf(t) >= 0; });
        });
      } else { shown = base; }
      page = 0;
      draw();
    }
    table.querySelectorAll('th').forEach(function (th) {
      var key = th.getAttribute('data-key');
      if (!key || !(key in cols)) { return; }
      th.addEventListener('click', function () {
        asc = !(sortKey === key && asc);
        sortKey = key;
        table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-order'); });
        th.setAttribute('data-order', asc ? 'asc' : 'desc');
        apply();
      });
    });
    var timer = null;
    document.getElementById('ranking-search').addEventListener('input', function () {
      clearTimeout(timer); timer = setTimeout(apply, 120);
    });
    document.getElementById('ranking-prev').addEventListener('click', function () { page--; draw(); });
    document.getElementById('ranking-next').addEventListener('click', function () { page++; draw(); });
    document.getElementById('ranking-page-size').addEventListener('change', function (e) {
      size = parseInt(e.target.value, 10); page = 0; draw();
    });
    document.getElementById('ranking-export').addEventListener('click', function () {
      var lines = [names.concat(['url']).join('\\t')];
      for (var k = 0; k < shown.length; k++) {
        var i = shown[k];
        lines.push(names.concat(['url']).map(function (c) {
          var v = cols[c][i]; return v === null || v === undefined ? '' : String(v);
        }).join('\\t'));
      }
      var a = document.createElement('a');
      a.href = URL.createObjectURL(new Blob([lines.join('\\n') + '\\n'], {type: 'text/tab-separated-values'}));
      a.download = 'ranking_shown.tsv';
      document.body.appendChild(a); a.click(); a.remove();
    });
    table.setAttribute('data-ready', '1');
    draw();
  }
})();
"""
