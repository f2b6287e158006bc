"""Review of a screen: a self-contained HTML report, the top hits as mmCIF, and a ChimeraX script.

``difffit-screen report RESULTS_DIR`` (:func:`write_report`) reads ``ranking.parquet``,
``fits.parquet``, ``failures.parquet`` and ``run.json`` (each optional but the ranking) from
``RESULTS_DIR`` and writes::

    RESULTS_DIR/report/index.html              one file: the top hits (name, organism, link,
                                               a 3D view in the density, pictures), then the
                                               full ranking (paged, searchable, sortable;
                                               see ranking_table), plots, runs
    RESULTS_DIR/report/ranking.tsv             every row of the ranking, for spreadsheets
    RESULTS_DIR/report/hits/rank<r>_<candidate>.png   each top hit's pictures
    RESULTS_DIR/report/models/rank<r>_<candidate>.cif   top hits, posed in the map frame
    RESULTS_DIR/report/<map file>              the map, hard-linked or copied (so the folder
                                               can be copied elsewhere)
    RESULTS_DIR/report/top_hits.cxc            ChimeraX: the map at the screen's threshold and
                                               the top hits coloured by rank (relative paths)

The map is taken from ``--prepared`` (a prepared ``.npz``), else ``--map``, else the map named in
``run.json``; the threshold from ``--threshold``, else the prepared map, else ``run.json``.
Without a map the report is still written, without the density pictures and without the map in
the ``.cxc``. A top hit whose source cannot be read gets an error row in the report's problems
table; the rest of the report is written.

Modules
-------
results
    The results folder read (:func:`read_results`).
density
    The map drawn (:func:`load_map_view`) and its copy beside the script.
export
    The top hits posed in the map frame as mmCIF (:func:`export_top_hits`).
chimerax
    The ``.cxc`` script (:func:`write_cxc`).
figures
    The pictures (matplotlib): each hit in the density, score versus size, significance.
html, ranking_table, viewer, page
    The page: building blocks, the paged ranking table, the 3D views (3Dmol.js), the page.
write
    :func:`write_report`, all of the above in one call.

The page's scripts and style are package data under ``difffit_screen/web/``; 3Dmol.js is
vendored under ``difffit_screen/vendor/``.
"""

from .chimerax import cxc_comment, cxc_path, cxc_quote, rel_path, write_cxc
from .density import MapView, load_map_view
from .export import HitExport, export_top_hits, load_candidate_atoms
from .figures import crop_box
from .results import Q_HIT, Results, read_results
from .write import DEFAULT_TOP, REPORT_DIR, write_report

__all__ = [
    "DEFAULT_TOP",
    "Q_HIT",
    "REPORT_DIR",
    "HitExport",
    "MapView",
    "Results",
    "crop_box",
    "cxc_comment",
    "cxc_path",
    "cxc_quote",
    "export_top_hits",
    "load_candidate_atoms",
    "load_map_view",
    "read_results",
    "rel_path",
    "write_cxc",
    "write_report",
]
