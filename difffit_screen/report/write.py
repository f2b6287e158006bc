"""``write_report``: a results folder's ``report/`` folder, written in one call."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..outputs import write_text
from .chimerax import CXC_NAME, write_cxc
from .density import copy_map, load_map_view
from .export import export_top_hits
from .page import TABLES_DIR, render_html
from .ranking_table import write_ranking_tsv
from .results import find_run_value, read_results

__all__ = ["DEFAULT_TOP", "REPORT_DIR", "TABLES_DIR", "link_tables", "write_report"]

REPORT_DIR = "report"
"""The report's folder inside the results folder."""

DEFAULT_TOP = 10
"""Top hits exported and pictured by default."""


def write_report(results_dir: str | os.PathLike, map_path: str | os.PathLike | None = None,
                 prepared: str | os.PathLike | None = None, threshold: float | None = None,
                 top: int = DEFAULT_TOP, require_run: bool = False) -> Path:
    """Write ``RESULTS_DIR/report/`` (index.html, models/, top_hits.cxc, the map copy, the
    Parquet tables in ``tables/``: every link of the page stays inside the folder).

    Parameters
    ----------
    results_dir : path
        Folder with ``ranking.parquet`` (and optionally ``fits``/``failures``/``run.json``).
    map_path, prepared : path, optional
        The map (MRC) or prepared map (``.npz``); by default the map recorded in ``run.json``.
    threshold : float, optional
        Contour level; by default from the prepared map or ``run.json``.
    top : int
        Number of top hits exported and pictured.
    require_run : bool
        Refuse a folder without a finished run's ``run.json`` (``difffit-screen report`` does;
        tables written from :func:`~difffit_screen.screen` have none).

    Returns
    -------
    Path
        The ``index.html`` written.

    Raises
    ------
    InputError
        ``results_dir`` has no ranking, or a table or the map cannot be read, or (with
        ``require_run``) its ``run.json`` is missing, unreadable or not marked complete.
    """
    from ..significance import fit_null_model

    results = read_results(results_dir, require_run=require_run)
    report_dir = results.folder / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    view = load_map_view(map_path, prepared, threshold, results.run, results.folder)
    exports = export_top_hits(results.ranking, report_dir, top, results.folder)
    map_file = copy_map(view, report_dir) if view is not None else None
    resolution = find_run_value(results.run, "resolution")
    cxc = write_cxc(report_dir / CXC_NAME, exports, map_file,
                    view.threshold if view is not None else None,
                    float(resolution) if isinstance(resolution, int | float) else None)
    null = fit_null_model(results.ranking)
    write_ranking_tsv(results.ranking, report_dir / "ranking.tsv")
    link_tables(results.files, report_dir / TABLES_DIR)
    page = render_html(results, null, exports, view, report_dir, top, cxc)
    return write_text(report_dir / "index.html", page)


def link_tables(files: dict[str, Path], folder: Path) -> list[Path]:
    """The results' Parquet tables in the report's ``folder`` (hard links where the file
    system allows, else copies), so that the page's download links work in ``report.zip`` or
    a copied report folder; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, path in files.items():
        if not name.endswith(".parquet"):
            continue
        target = folder / name
        tmp = folder / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
        os.replace(tmp, target)
        out.append(target)
    return out
