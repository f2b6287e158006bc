"""The report page, ``index.html``: one self-contained HTML file (styles, scripts, pictures and
data inlined) with the top hits, the full ranking, the plots, the problems and the run record."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from ..tables import FIELD_DOCS
from .chimerax import rel_path
from .density import MapView
from .export import HitExport, model_file_name
from .figures import plot_hit_views, plot_score_vs_size, plot_significance
from .html import esc, simple_table_html, web_asset, web_url
from .ranking_table import PAGE_SIZE, ranking_section_html
from .results import Q_HIT, Results
from .viewer import (
    VIEWER_LICENSE,
    VIEWER_NAME,
    VIEWER_VERSION,
    hit_payload,
    viewer_html,
    viewer_library_html,
)

__all__ = ["HITS_DIR", "hit_section_html", "render_html"]

HITS_DIR = "hits"
"""Folder of the report holding each top hit's picture as a PNG file (the Snakemake report
shows them)."""

MAX_RUN_VALUE = 400
"""Characters of one run.json value shown in the report (longer ones are cut)."""

MAX_NAMED_HITS = 20
"""Hits named in the page's summary line (the rest are counted)."""

TABLES_DIR = "tables"
"""The report's folder of the results' Parquet tables (linked for download from the page)."""


# --- top hits ---------------------------------------------------------------------------------

def hit_title(row: dict) -> str:
    """``rank r: candidate (name) (score s, hits h, q = q)`` of a ranking row."""
    q = "" if row.get("qvalue") is None else f", q = {row['qvalue']:.3g}"
    name = f" — {row['name']}" if row.get("name") else ""
    score = "" if row.get("score") is None else format(row["score"], ".4f")
    return f"rank {row['rank']}: {row['candidate']}{name} (score {score}, hits {row['hits']}{q})"


def link_html(url: str | None, text: str) -> str:
    """A link opening ``url`` in a new tab (``text`` already escaped); ``text`` alone when
    ``url`` is not an http(s) URL (:func:`~difffit_screen.report.html.web_url`)."""
    url = web_url(url)
    if url is None:
        return text
    return f'<a href="{esc(url)}" target="_blank" rel="noopener">{text}</a>'


def hit_facts_html(row: dict) -> str:
    """What the candidate is: name (linked), organism, gene, taxon, domain ranges, source."""
    facts = []
    if row.get("name"):
        name = esc(row["name"])
        facts.append(f"<b>{link_html(row['url'], name) if row.get('url') else name}</b>")
    if row.get("organism"):
        taxon = f" (taxon {row['taxid']})" if row.get("taxid") else ""
        facts.append(f"<i>{esc(row['organism'])}</i>{esc(taxon)}")
    if row.get("gene"):
        facts.append(f"gene {esc(row['gene'])}")
    if row.get("residue_ranges"):
        of = f" of {esc(row['parent'])}" if row.get("parent") else ""
        facts.append(f"residues {esc(row['residue_ranges'])}{of}")
    if row.get("url") and not row.get("name"):
        facts.append(link_html(row["url"], esc(row["url"])))
    if not facts:
        facts.append("no name known (a local file without a header naming it)")
    return f'<p class="hit-facts">{" · ".join(facts)}</p>'


def hit_section_html(exports: list[HitExport], view: MapView | None,
                     report_dir: Path | None = None, viewers: bool = True) -> tuple[str, int]:
    """Each top hit: what it is, a 3D view of it in the density, and its pictures.

    The pictures are also written as ``report_dir/hits/rank<r>_<candidate>.png`` when
    ``report_dir`` is given. Returns ``(html, number of images)``.
    """
    if report_dir is not None:
        (report_dir / HITS_DIR).mkdir(parents=True, exist_ok=True)
    cards = [hit_card_html(hit, view, report_dir, viewers) for hit in exports]
    return "\n".join(html for html, _ in cards), sum(n for _, n in cards)


def hit_card_html(hit: HitExport, view: MapView | None, report_dir: Path | None,
                  viewers: bool) -> tuple[str, int]:
    """One top hit's card (see :func:`hit_section_html`); returns ``(html, images)``."""
    row = hit.row
    title = hit_title(row)
    head = (f'<div class="hit-card"><h3 id="hit-{row["rank"]}"><span class="swatch" '
            f'style="background:{hit.colour}"></span> {esc(title)}</h3>{hit_facts_html(row)}')
    if hit.xyz is None:
        return f'{head}\n<p class="error">No pictures: {esc(hit.error)}</p></div>', 0
    if view is None:
        return f"{head}\n<p>No map given: no pictures (use --map or --prepared).</p></div>", 0
    parts = [head]
    if viewers and hit.atoms is not None:
        payload = hit_payload(view.data, view.origin, view.voxel_size, view.threshold,
                              hit.atoms, hit.xyz, hit.colour, title)
        parts.append(viewer_html(int(row["rank"]), payload))
    png = plot_hit_views(view, hit.xyz, title, hit.colour, hit.trace)
    if report_dir is not None:
        (report_dir / HITS_DIR / model_file_name(row, ".png")).write_bytes(base64.b64decode(png))
    parts.append(f'<img class="hit-view" alt="{esc(title)}" '
                 f'src="data:image/png;base64,{png}"></div>')
    return "\n".join(parts), 1


# --- run record and problems ------------------------------------------------------------------

def problems_rows(results: Results, exports: list[HitExport]) -> list[dict]:
    """The failures table of the screen plus the report's own export errors."""
    rows = results.failures.to_pylist()
    rows += [{"candidate": e.row["candidate"], "source": e.row.get("source"), "stage": "report",
              "reason": e.error} for e in exports if e.error]
    return rows


def flatten(value, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested dicts/lists of ``run.json`` into ``(dotted key, text)`` pairs."""
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = []
        for i, v in enumerate(value):
            out += flatten(v, f"{prefix}[{i}]")
        return out
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > MAX_RUN_VALUE:
        text = text[:MAX_RUN_VALUE] + f" … ({len(text)} characters in run.json)"
    return [(prefix, text)]


def run_section_html(run: dict | None) -> str:
    """Parameters, inputs and versions recorded by the fit command in ``run.json``."""
    if run is None:
        return "<p>No <code>run.json</code> in the results folder: parameters not recorded.</p>"
    rows = [{"key": k, "value": v} for k, v in flatten(run)]
    return simple_table_html(rows, ["key", "value"], "run")


def software_rows() -> list[dict]:
    """Versions of Python, the packages the screen and the report use, and the 3D viewer, as
    ``{"software", "version"}`` rows."""
    from ..outputs import software_versions as run_versions

    rows = [{"software": k, "version": v}
            for k, v in run_versions(extra=("matplotlib",)).items()]
    rows.append({"software": f"{VIEWER_NAME} (3D viewer, {VIEWER_LICENSE}, inlined)",
                 "version": VIEWER_VERSION})
    return rows


def input_checksums(results: Results, view: MapView | None) -> list[dict]:
    """sha256 of the files the report read (the results tables, run.json and the map)."""
    from ..maps import file_sha256

    files = dict(results.files)
    if view is not None and view.path:
        files["map"] = Path(view.path)
    return [{"input": k, "path": str(p), "bytes": p.stat().st_size, "sha256": file_sha256(p)}
            for k, p in files.items()]


# --- the page ---------------------------------------------------------------------------------

def summary_html(results: Results, view: MapView | None) -> str:
    """The page's first paragraph: candidates ranked, the hits (q < :data:`Q_HIT`) by name,
    failures, the results folder and the map."""
    ranking = results.ranking
    significant = [r for r in ranking.select(["candidate", "name", "qvalue"]).to_pylist()
                   if r["qvalue"] is not None and r["qvalue"] < Q_HIT]
    hits = [r["candidate"] + (f" {r['name']}" if r["name"] else "")
            for r in significant[:MAX_NAMED_HITS]]
    more = (f", … {len(significant) - MAX_NAMED_HITS} more"
            if len(significant) > MAX_NAMED_HITS else "")
    hit_names = f" ({esc(', '.join(hits))}{more})" if hits else ""
    map_text = (f"{esc(view.path or 'prepared map')}, contour {view.threshold}"
                if view is not None else "no map given")
    return f"""<p id="summary">{ranking.num_rows} candidates ranked, {len(significant)} with \
q &lt; {Q_HIT}{hit_names};
{results.failures.num_rows} failed. Results: <code>{esc(results.folder)}</code>.
Map: <code>{map_text}</code>.</p>"""


def ranking_html(results: Results, exports: list[HitExport], report_dir: Path) -> str:
    """The full ranking (:mod:`~difffit_screen.report.ranking_table`), with the top hits'
    models and the tables to download linked."""
    models = {e.row["candidate"]: (None if e.model_path is None
                                   else rel_path(e.model_path, report_dir), e.colour)
              for e in exports}
    downloads = [(f"{name} (all rows)", f"{TABLES_DIR}/{name}")  # inside the report folder
                 for name in results.files if (report_dir / TABLES_DIR / name).is_file()]
    if (report_dir / "ranking.tsv").exists():
        downloads.insert(0, ("ranking.tsv (all rows)", "ranking.tsv"))
    return ranking_section_html(results.ranking, models, FIELD_DOCS, downloads)


def plots_html(results: Results, null, top: int) -> str:
    """The score-versus-size and significance plots (none for an empty ranking)."""
    ranking = results.ranking
    if not ranking.num_rows:
        return ""
    return (f'<img id="score-size" alt="score versus size" '
            f'src="data:image/png;base64,{plot_score_vs_size(ranking, null, top)}">'
            f'<img id="significance" alt="significance" '
            f'src="data:image/png;base64,{plot_significance(ranking, null, top)}">')


def cxc_html(cxc: Path | None, report_dir: Path) -> str:
    """How to open the report's ChimeraX script (nothing when there is none)."""
    if not cxc:
        return ""
    return (f"<p>ChimeraX: <code>chimerax {esc(rel_path(cxc, report_dir))}</code> opens the "
            f"map and the top hits coloured by rank (paths relative to the report folder).</p>")


def render_html(results: Results, null, exports: list[HitExport], view: MapView | None,
                report_dir: Path, top: int, cxc: Path | None) -> str:
    """Assemble the report page (one self-contained HTML string); writes the top hits'
    pictures under ``report_dir/hits/``."""
    hits_html, _ = hit_section_html(exports, view, report_dir)
    failures = simple_table_html(problems_rows(results, exports),
                                 ["candidate", "source", "stage", "reason"], "failures")
    inputs = simple_table_html(input_checksums(results, view),
                               ["input", "path", "bytes", "sha256"], "inputs")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>difffit-screen report: {esc(results.folder.name)}</title>
<style>{web_asset("report.css")}</style></head>
<body>
<h1>difffit-screen report</h1>
{summary_html(results, view)}
{cxc_html(cxc, report_dir)}
<h2>Top hits in the density</h2>
<p>Each top hit in 3D (the map's contour surface and the fitted model in its rank colour;
needs WebGL, no network) and as pictures: maximum projections with the model's trace, and
slices through its centre with the contour (cyan).</p>
{hits_html}
<h2>Ranking</h2>
<p>Every candidate, {PAGE_SIZE} to a page: type in the box to filter by candidate, name,
organism or gene; click a column header to sort. Hover a header for its meaning. Shaded rows:
q &lt; {Q_HIT}. Names link to the candidate's AlphaFold DB, RCSB or UniProt page.</p>
<div class="table-scroll">
{ranking_html(results, exports, report_dir)}
</div>
<h2>Score, size and significance</h2>
<p>{esc(null.describe())}</p>
{plots_html(results, null, top)}
<h2>Failures and problems</h2>
{failures}
<h2>Run</h2>
{run_section_html(results.run)}
<h3>Inputs read by this report</h3>
{inputs}
<h3>Software (report)</h3>
{simple_table_html(software_rows(), ["software", "version"], "software")}
<script>{web_asset("sortable_table.js")}</script>
<script>{web_asset("ranking_table.js")}</script>
{viewer_library_html() if "viewer3d" in hits_html else ""}
</body></html>
"""
