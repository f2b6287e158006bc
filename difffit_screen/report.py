"""Review of a screen: a self-contained HTML report, the top hits as mmCIF, and a ChimeraX script.

``difffit-screen report RESULTS_DIR`` reads ``ranking.parquet``, ``fits.parquet``,
``failures.parquet`` and ``run.json`` (each optional but the ranking) from ``RESULTS_DIR`` and
writes::

    RESULTS_DIR/report/index.html              one file: the top hits (name, organism, link,
                                               a 3D view in the density, pictures), then the
                                               full ranking (paged, searchable, sortable;
                                               see difffit_screen.ranking_table), plots, runs
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
the ``.cxc``.

Posed models come from the ranking's ``source`` and ``matrix`` columns (``matrix`` maps the
candidate's input coordinates to the map frame, see :mod:`difffit_screen`); ``source`` is a
structure file, or ``<shard.parquet>::<candidate>`` for a candidate of the library store. A
candidate whose source cannot be read gets an error row in the report's problems table; the rest
of the report is written.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import InputError
from .structures import (
    Atoms,
    apply_matrix,
    read_structure,
    select_residue_ranges,
    write_structure,
)
from .tables import FAILURES_SCHEMA, FIELD_DOCS, RANKING_SCHEMA, read_table

log = logging.getLogger(__name__)

REPORT_DIR = "report"
DEFAULT_TOP = 10
Q_HIT = 0.05
"""q-value below which a candidate is called a hit in the report's plots and summary."""

RANK_COLOURS = ("orangered", "dodgerblue", "limegreen", "gold", "orchid", "darkorange",
                "turquoise", "sienna", "hotpink", "slategray", "yellowgreen", "mediumpurple")
"""Colours of the top hits by rank (CSS / ChimeraX / matplotlib names, cycled)."""

VIEW_MARGIN = 12.0
"""Å of map kept around a hit's atoms in its pictures."""

TRACE_MAX_GAP = 4.5
"""Å between consecutive CA (P) atoms above which the drawn trace is broken (chain breaks)."""

SLAB_HALF_WIDTH = 2.0
"""Å either side of a slice within which atoms are drawn on it."""

MAX_RUN_VALUE = 400
"""Characters of one run.json value shown in the report (longer ones are cut)."""

HITS_DIR = "hits"
"""Folder of the report holding each top hit's picture as a PNG file (the Snakemake report
shows them)."""


@dataclass
class MapView:
    """The density shown in the report.

    Attributes
    ----------
    data : np.ndarray
        ``(nz, ny, nx)`` float32 map values.
    origin, voxel_size : np.ndarray
        ``(3,)`` ``[x, y, z]`` in Å (voxel ``[k, j, i]`` lies at ``origin + (i, j, k) * voxel``).
    threshold : float or None
        Contour level of the screen.
    path : str
        The MRC file (empty when the map came from a prepared ``.npz`` without one).
    """

    data: np.ndarray
    origin: np.ndarray
    voxel_size: np.ndarray
    threshold: float | None
    path: str = ""


@dataclass
class Results:
    """A screen's outputs as read from its results folder."""

    folder: Path
    ranking: pa.Table
    failures: pa.Table
    run: dict | None
    files: dict = field(default_factory=dict)


@dataclass
class HitExport:
    """One exported top hit: its ranking row, posed atoms and file, or the error."""

    row: dict
    colour: str
    xyz: np.ndarray | None = None
    trace: np.ndarray | None = None
    atoms: Atoms | None = None
    model_path: Path | None = None
    error: str | None = None


# --- reading ----------------------------------------------------------------------------------

def read_results(folder: str | os.PathLike) -> Results:
    """Read a results folder; the ranking is required, the rest optional.

    Significance columns left null in the ranking are filled with
    :func:`difffit_screen.significance.add_significance`.
    """
    from .significance import add_significance

    folder = Path(folder)
    ranking_path = folder / "ranking.parquet"
    if not ranking_path.exists():
        raise InputError(f"{ranking_path}: ranking not found (is {folder} a results folder?)")
    ranking = read_table(ranking_path, RANKING_SCHEMA)
    if ranking.num_rows and ranking.column("pvalue").null_count == ranking.num_rows:
        ranking = add_significance(ranking)
    ranking = sort_by_rank(ranking)
    files = {"ranking.parquet": ranking_path}
    failures = FAILURES_SCHEMA.empty_table()
    if (folder / "failures.parquet").exists():
        failures = read_table(folder / "failures.parquet", FAILURES_SCHEMA)
        files["failures.parquet"] = folder / "failures.parquet"
    if (folder / "fits.parquet").exists():
        files["fits.parquet"] = folder / "fits.parquet"
    run = read_run_json(folder / "run.json")
    if run is not None:
        files["run.json"] = folder / "run.json"
    return Results(folder, ranking, failures, run, files)


def sort_by_rank(ranking: pa.Table) -> pa.Table:
    """Return the ranking ordered by its ``rank`` column (rows without a rank last)."""
    if ranking.num_rows == 0:
        return ranking
    ranks = [r if r is not None else 1 << 30 for r in ranking.column("rank").to_pylist()]
    return ranking.take(pa.array(np.argsort(ranks, kind="stable")))


def read_run_json(path: Path) -> dict | None:
    """Return the parsed ``run.json`` or None when absent or unreadable (logged)."""
    if not path.exists():
        return None
    try:
        run = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("%s: cannot read run record (%s); reporting without it", path, exc)
        return None
    return run if isinstance(run, dict) else {"run": run}


def find_run_value(run: dict | None, *keys: str):
    """Return the first of ``keys`` found at the top level or in a nested dict of ``run``."""
    if not run:
        return None
    for key in keys:
        if run.get(key) is not None:
            return run[key]
    for value in run.values():
        if isinstance(value, dict):
            for key in keys:
                if value.get(key) is not None:
                    return value[key]
    return None


def load_map_view(map_path: str | os.PathLike | None = None,
                  prepared: str | os.PathLike | None = None,
                  threshold: float | None = None, run: dict | None = None,
                  base: Path | None = None) -> MapView | None:
    """Load the density to draw: ``prepared`` .npz, else ``map_path``, else the map in ``run``.

    Returns None (and logs why) when no map is given or the one recorded in ``run`` is gone.
    """
    from .maps import load_prepared, read_map

    if prepared is not None:
        prep = load_prepared(prepared)
        level = threshold if threshold is not None else prep.threshold
        path = prep.raw.path if prep.raw.path and Path(prep.raw.path).exists() else ""
        return MapView(prep.raw.data, np.asarray(prep.raw.origin, float),
                       np.asarray(prep.raw.voxel_size, float), level, path)
    if threshold is None:
        recorded = find_run_value(run, "threshold", "level")
        threshold = float(recorded) if isinstance(recorded, int | float) else None
    if map_path is None:
        recorded = find_run_value(run, "map", "map_path", "target_map")
        if isinstance(recorded, dict):  # the fit command's record: {"path": ..., "threshold": ...}
            recorded = recorded.get("path")
        if not recorded:
            log.warning("no map given and none recorded in run.json: report without pictures")
            return None
        map_path = resolve_path(str(recorded), base)
        if map_path is None:
            log.warning("map %s recorded in run.json not found: report without pictures",
                        recorded)
            return None
    dmap = read_map(map_path)
    return MapView(dmap.data, np.asarray(dmap.origin, float), np.asarray(dmap.voxel_size, float),
                   threshold, str(map_path))


def resolve_path(path: str, base: Path | None = None) -> Path | None:
    """Return ``path`` if it exists, else relative to ``base`` or its parent; None if nowhere."""
    candidates = [Path(path)]
    if base is not None and not Path(path).is_absolute():
        candidates += [base / path, base.parent / path]
    for c in candidates:
        if c.exists():
            return c
    return None


# --- posed models -----------------------------------------------------------------------------

def load_candidate_atoms(row: dict, base: Path | None = None,
                         shard_cache: dict | None = None) -> Atoms:
    """Read the candidate of a ranking ``row`` from its ``source`` (input frame).

    ``source`` is a structure file, or ``<shard.parquet>::<candidate>`` for the library store
    (read with :func:`difffit_screen.store.read_shard`). A domain read from a structure file is
    cut to its ``residue_ranges``.

    Raises
    ------
    InputError
        The source is missing, unreadable, or does not hold the candidate.
    """
    source = row.get("source") or ""
    name = row["candidate"]
    if not source:
        raise InputError(f"{name}: no source recorded")
    if "::" in source:
        shard, _, member = source.rpartition("::")
        return load_store_candidate(shard, member or name, base, shard_cache)
    path = resolve_path(source, base)
    if path is None:
        raise InputError(f"{source}: structure file not found")
    atoms = read_structure(path, name=name)
    if row.get("residue_ranges"):
        atoms = select_residue_ranges(atoms, row["residue_ranges"])
        if len(atoms) == 0:
            raise InputError(f"{source}: no atoms in residue ranges {row['residue_ranges']}")
    return atoms


def load_store_candidate(shard: str, member: str, base: Path | None,
                         shard_cache: dict | None) -> Atoms:
    """Return candidate ``member`` of library shard ``shard`` (read once per shard)."""
    path = resolve_path(shard, base)
    if path is None:
        raise InputError(f"{shard}: library shard not found")
    cache = shard_cache if shard_cache is not None else {}
    if path not in cache:
        try:
            from .store import read_shard
        except ImportError as exc:
            raise InputError(f"{shard}: cannot read library shards ({exc})") from None
        try:
            cache[path] = {a.name: a for a in read_shard(path)}
        except InputError:
            raise
        except Exception as exc:  # a corrupt shard must not stop the report
            raise InputError(f"{shard}: cannot read library shard ({exc})") from None
    if member not in cache[path]:
        raise InputError(f"{shard}: no candidate {member!r} in the shard")
    return cache[path][member]


def safe_filename(name: str) -> str:
    """A file-name stem for ``name``: :func:`difffit_screen.outputs.safe_name` (no path
    separators or ``..``, bounded length with a hash suffix)."""
    from .outputs import safe_name

    return safe_name(name)


def export_top_hits(ranking: pa.Table, out_dir: Path, top: int,
                    base: Path | None = None) -> list[HitExport]:
    """Write the ``top`` best candidates as mmCIF in the map frame under ``out_dir/models``.

    Returns one :class:`HitExport` per top candidate, in rank order, with the error message for
    those that could not be read or have no pose.
    """
    models = out_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    shard_cache: dict = {}
    exports = []
    for i, row in enumerate(ranking.slice(0, top).to_pylist()):
        hit = HitExport(row, RANK_COLOURS[i % len(RANK_COLOURS)])
        try:
            if row.get("matrix") is None:
                raise InputError(f"{row['candidate']}: no pose in the ranking")
            atoms = load_candidate_atoms(row, base, shard_cache)
            path = models / f"rank{row['rank']}_{safe_filename(row['candidate'])}.cif"
            write_structure(atoms, path, np.asarray(row["matrix"], float))
            hit.xyz = apply_matrix(atoms.xyz, np.asarray(row["matrix"], float))
            hit.trace = hit.xyz[trace_mask(atoms)]
            hit.atoms = atoms
            fill_missing_names(hit.row, atoms)
            hit.model_path = path
        except (InputError, OSError, ValueError, RuntimeError) as exc:
            hit.error = str(exc)
            log.warning("report: cannot export %s: %s", row["candidate"], exc)
        exports.append(hit)
    return exports


def fill_missing_names(row: dict, atoms: Atoms) -> None:
    """Give a ranking row without names (a screen fitted before names were carried) those of its
    candidate's file header or store entry."""
    from .annotations import row_annotation

    if row.get("name") or row.get("url"):
        return
    row.update((k, v) for k, v in row_annotation(atoms.meta).items() if v is not None)


def trace_mask(atoms: Atoms) -> np.ndarray:
    """Atoms of the model's trace: CA of amino acids and P of nucleotides (all atoms if fewer
    than 3 of those)."""
    mask = atoms.polymer & np.isin(atoms.atom_name, ["CA", "P"])
    return mask if mask.sum() >= 3 else np.ones(len(atoms), bool)


def trace_segments(trace: np.ndarray, max_gap: float = TRACE_MAX_GAP) -> list[np.ndarray]:
    """Split a ``(N, 3)`` trace into runs of consecutive points closer than ``max_gap`` Å."""
    if len(trace) < 2:
        return [trace]
    breaks = np.nonzero(np.linalg.norm(np.diff(trace, axis=0), axis=1) > max_gap)[0] + 1
    return np.split(trace, breaks)


def copy_map(view: MapView, out_dir: Path) -> Path:
    """Put the map next to the ``.cxc`` script: a hard link to (or a copy of) its file, or an
    MRC written from the array when it came from a prepared ``.npz`` without its file."""
    from .maps import DensityMap, write_map

    if view.path:
        src = Path(view.path)
        dest = out_dir / src.name
        if dest.exists() and dest.resolve() == src.resolve():
            return dest
        if dest.exists():
            dest.unlink()
        try:
            os.link(src, dest)  # a hard link costs no space; copying the folder copies the bytes
        except OSError:
            shutil.copyfile(src, dest)
        return dest
    return write_map(out_dir / "map.mrc", DensityMap(view.data, view.voxel_size, view.origin))


def write_cxc(path: Path, exports: list[HitExport], map_file: Path | None,
              threshold: float | None, resolution: float | None = None) -> Path:
    """Write a ChimeraX script opening the map (``#1``) and the exported top hits (``#2`` ...).

    Paths are relative to the script's folder (ChimeraX runs a ``.cxc`` from its own folder),
    so the report folder can be copied elsewhere. Each model gets its rank colour; commented
    ``fitmap`` lines refine a hit locally in the map.
    """
    lines = ["# ChimeraX script written by difffit-screen report: the map and the top hits,",
             "# coloured by rank. Open with: chimerax top_hits.cxc  (or 'open top_hits.cxc').",
             "close session"]
    first_model = 1
    if map_file is not None:
        lines.append(f"open {cxc_quote(rel_path(map_file, path.parent))}")
        if threshold is not None:
            lines.append(f"volume #1 level {threshold:.6g} style surface transparency 0.5")
        first_model = 2
    model_id = first_model
    res = f" resolution {resolution:g}" if resolution else ""
    for hit in exports:
        if hit.model_path is None:
            lines.append(f"# rank {hit.row['rank']} {hit.row['candidate']}: not exported "
                         f"({hit.error})")
            continue
        label = cxc_quote(f"rank{hit.row['rank']}_{hit.row['candidate']}")
        lines += [f"open {cxc_quote(rel_path(hit.model_path, path.parent))}",
                  f"rename #{model_id} {label}",
                  f"color #{model_id} {hit.colour}"]
        if map_file is not None:
            lines.append(f"# fitmap #{model_id} inMap #1{res}   "
                         f"(local refinement of rank {hit.row['rank']})")
        model_id += 1
    lines += ["cartoon", "view"]
    path.write_text("\n".join(lines) + "\n")
    return path


def rel_path(target: Path, start: Path) -> str:
    """``target`` relative to ``start``, with forward slashes."""
    return Path(os.path.relpath(target, start)).as_posix()


def cxc_quote(text: str) -> str:
    """Quote a ChimeraX command argument when it holds spaces."""
    return f'"{text}"' if re.search(r"\s", text) else text


# --- pictures ---------------------------------------------------------------------------------

def figure_to_base64(fig) -> str:
    """Render a matplotlib figure to a base64 PNG string and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def crop_box(view: MapView, xyz: np.ndarray, margin: float = VIEW_MARGIN) -> tuple[slice, ...]:
    """Return ``(z, y, x)`` slices of the map around atoms ``xyz`` (``(N, 3)``, Å) + ``margin``."""
    lo = np.floor((xyz.min(axis=0) - margin - view.origin) / view.voxel_size).astype(int)
    hi = np.ceil((xyz.max(axis=0) + margin - view.origin) / view.voxel_size).astype(int) + 1
    shape_xyz = np.array(view.data.shape[::-1])
    lo = np.clip(lo, 0, shape_xyz - 1)
    hi = np.clip(hi, lo + 1, shape_xyz)
    if np.any(hi - lo < 2):  # the model lies outside the map: show all of it
        return (slice(None),) * 3
    return tuple(slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))


def plot_hit_views(view: MapView, xyz: np.ndarray, title: str, colour: str,
                   trace: np.ndarray | None = None) -> str:
    """Pictures of one posed model in the density; returns a base64 PNG.

    Top row: maximum projections of the map (cropped to the model ± :data:`VIEW_MARGIN`) along
    x, y and z with the model's CA trace (``trace``, ``(M, 3)``; all atoms if not given) projected
    over them. Bottom row: the orthogonal slices through the
    model's centroid with the screen's contour and the atoms within ± :data:`SLAB_HALF_WIDTH` Å
    of each slice.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    box = crop_box(view, xyz)
    sub = view.data[box]
    start = np.array([box[2].start or 0, box[1].start or 0, box[0].start or 0])
    sub_origin = view.origin + start * view.voxel_size
    extent_xyz = [(sub_origin[a] - view.voxel_size[a] / 2,
                   sub_origin[a] + (sub.shape[2 - a] - 0.5) * view.voxel_size[a]) for a in range(3)]
    centre = xyz.mean(axis=0)
    centre_idx = np.clip(np.round((centre - sub_origin) / view.voxel_size).astype(int), 0,
                         np.array(sub.shape[::-1]) - 1)
    # (projection axis, horizontal axis, vertical axis) in x=0, y=1, z=2
    panels = ((0, 1, 2), (1, 0, 2), (2, 0, 1))
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 6.8))
    vmin, vmax = float(np.percentile(sub, 1)), float(sub.max())
    for col, (along, h, v) in enumerate(panels):
        array_axis = 2 - along
        extent = [*extent_xyz[h], *extent_xyz[v]]
        proj = orient(sub.max(axis=array_axis), h, v)
        ax = axes[0, col]
        ax.imshow(proj, origin="lower", extent=extent, cmap="gray", vmin=vmin, vmax=vmax,
                  interpolation="nearest")
        for segment in trace_segments(xyz if trace is None else trace):
            ax.plot(segment[:, h], segment[:, v], c=colour, lw=0.9, alpha=0.85)
        ax.set_title(f"max projection along {'xyz'[along]}", fontsize=9)
        slab = np.take(sub, centre_idx[along], axis=array_axis)
        plane = sub_origin[along] + centre_idx[along] * view.voxel_size[along]
        ax = axes[1, col]
        ax.imshow(orient(slab, h, v), origin="lower", extent=extent, cmap="gray", vmin=vmin,
                  vmax=vmax, interpolation="nearest")
        if view.threshold is not None and slab.min() < view.threshold < slab.max():
            hs = np.linspace(*extent_xyz[h], orient(slab, h, v).shape[1])
            vs = np.linspace(*extent_xyz[v], orient(slab, h, v).shape[0])
            ax.contour(hs, vs, orient(slab, h, v), levels=[view.threshold], colors="cyan",
                       linewidths=0.8)
        near = np.abs(xyz[:, along] - plane) <= SLAB_HALF_WIDTH
        ax.scatter(xyz[near, h], xyz[near, v], s=3.0, c=colour, alpha=0.9, linewidths=0)
        ax.set_title(f"slice {'xyz'[along]} = {plane:.1f} Å", fontsize=9)
        for ax in axes[:, col]:
            ax.set_xlim(extent[0] - VIEW_MARGIN, extent[1] + VIEW_MARGIN)
            ax.set_ylim(extent[2] - VIEW_MARGIN, extent[3] + VIEW_MARGIN)
            ax.set_facecolor("0.92")
            ax.set_xlabel(f"{'xyz'[h]} (Å)", fontsize=8)
            ax.set_ylabel(f"{'xyz'[v]} (Å)", fontsize=8)
            ax.tick_params(labelsize=7)
    contour = f"; contour {view.threshold:g} (cyan)" if view.threshold is not None else ""
    outside = fraction_outside(view, xyz)
    note = f"; {outside:.0%} of atoms outside the map box" if outside > 0 else ""
    fig.suptitle(f"{title}{contour}{note}", fontsize=10)
    fig.tight_layout()
    return figure_to_base64(fig)


def fraction_outside(view: MapView, xyz: np.ndarray) -> float:
    """Fraction of atoms ``xyz`` (``(N, 3)``, Å) outside the map's box."""
    idx = (xyz - view.origin) / view.voxel_size
    inside = np.all((idx >= -0.5) & (idx <= np.array(view.data.shape[::-1]) - 0.5), axis=1)
    return float(1.0 - inside.mean()) if len(xyz) else 0.0


def orient(plane: np.ndarray, h: int, v: int) -> np.ndarray:
    """Return a 2-D map section (array axes in ``[z, y, x]`` order, one removed) as rows = the
    vertical world axis ``v`` and columns = the horizontal axis ``h``."""
    return plane if h < v else plane.T


def plot_score_vs_size(ranking: pa.Table, null, top: int) -> str:
    """Score versus candidate size, hits (q < :data:`Q_HIT`) highlighted, top hits labelled,
    with each candidate's null (location and location + 3 spreads of its size window);
    returns a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ranking.to_pylist()
    size_var = null.size_variable or ("n_residues" if any(r["n_residues"] for r in rows)
                                      else "n_atoms")
    size = np.array([r[size_var] or np.nan for r in rows], float)
    score = np.array([np.nan if r["score"] is None else r["score"] for r in rows], float)
    q = np.array([1.0 if r["qvalue"] is None else r["qvalue"] for r in rows], float)
    ok = np.array([bool(r["fit_ok"]) for r in rows])
    fig, ax = plt.subplots(figsize=(7.5, 5))
    hit = q < Q_HIT
    ax.scatter(size[~hit & ok], score[~hit & ok], s=18, c="0.55", label="candidate")
    ax.scatter(size[~ok], score[~ok], s=18, facecolors="none", edgecolors="0.55",
               label="no acceptable fit")
    ax.scatter(size[hit], score[hit], s=36, c="crimson", label=f"hit (q < {Q_HIT})")
    band = np.isfinite(size) & np.isfinite(null.location)
    if band.any():  # each candidate's null (its size window), drawn along the sizes
        order = np.flatnonzero(band)[np.argsort(size[band], kind="mergesort")]
        ax.plot(size[order], np.tanh(null.location[order]), c="k", lw=1, label="null location")
        ax.plot(size[order], np.tanh(null.location[order] + 3 * null.spread[order]), c="k",
                lw=1, ls="--", label="null + 3 spreads")
    for i, r in enumerate(rows[:top]):  # top hits by rank number, hits also by name
        if np.isfinite(size[i]) and np.isfinite(score[i]):
            label = f"{r['rank']}. {r['candidate']}" if hit[i] else f"{r['rank']}"
            ax.annotate(label, (size[i], score[i]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points", color=RANK_COLOURS[i % len(RANK_COLOURS)])
    if np.nanmin(size, initial=np.inf) > 0:
        ax.set_xscale("log")
    ax.set_xlabel(f"candidate size ({size_var})")
    ax.set_ylabel("score (best fit)")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Score versus size")
    fig.tight_layout()
    return figure_to_base64(fig)


def plot_significance(ranking: pa.Table, null, top: int) -> str:
    """Left: histogram of z-scores with the null density and the top hits marked by rank;
    right: -log10(q), most significant first, the q = :data:`Q_HIT` line, and the hits and the
    next three candidates labelled. Returns a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    rows = ranking.to_pylist()
    z = np.array([np.nan if r["zscore"] is None else r["zscore"] for r in rows], float)
    q = np.array([1.0 if r["qvalue"] is None else r["qvalue"] for r in rows], float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    finite = z[np.isfinite(z)]
    if finite.size:
        ax1.hist(finite, bins=max(10, min(60, finite.size // 2)), density=True, color="0.75",
                 label="library")
        xs = np.linspace(min(finite.min(), -4), max(finite.max(), 4), 300)
        pdf = stats.t.pdf(xs, null.df) if null.df else stats.norm.pdf(xs)
        ax1.plot(xs, pdf, c="k", lw=1.2, label="null" + (f" (t, {null.df:g} df)" if null.df
                                                         else " N(0, 1)"))
        for i, r in enumerate(rows[:top]):
            if np.isfinite(z[i]):
                colour = RANK_COLOURS[i % len(RANK_COLOURS)]
                ax1.axvline(z[i], c=colour, lw=1)
                ax1.annotate(f"{r['rank']}", (z[i], ax1.get_ylim()[1] * 0.92), color=colour,
                             fontsize=8, ha="center")
    ax1.set_xlabel("z-score (size-corrected Fisher z of the score)")
    ax1.set_ylabel("density")
    ax1.legend(fontsize=8)
    ax1.set_title("Scores against the fitted null")
    order = np.argsort(q, kind="stable")
    mlq = -np.log10(np.clip(q[order], 1e-300, 1.0))
    ax2.plot(np.arange(1, len(q) + 1), mlq, "o", ms=4, c="0.45")
    ax2.axhline(-math.log10(Q_HIT), c="crimson", ls="--", lw=1, label=f"q = {Q_HIT}")
    top_names = {r["candidate"]: i for i, r in enumerate(rows[:top])}
    n_label = min(top, int((q < Q_HIT).sum()) + 3)  # the hits and the next few
    for pos, idx in enumerate(order[:n_label]):
        name = rows[idx]["candidate"]
        colour = RANK_COLOURS[top_names[name] % len(RANK_COLOURS)] if name in top_names else "k"
        ax2.annotate(name, (pos + 1, mlq[pos]), fontsize=7, xytext=(4, 2),
                     textcoords="offset points", color=colour)
    ax2.set_xlabel("candidates, most significant first")
    ax2.set_ylabel("-log10 q (Benjamini-Hochberg)")
    ax2.legend(fontsize=8)
    ax2.set_title("Significance")
    fig.tight_layout()
    return figure_to_base64(fig)


# --- HTML -------------------------------------------------------------------------------------

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.getAttribute('data-order') !== 'asc';
      table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-order'); });
      th.setAttribute('data-order', asc ? 'asc' : 'desc');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var key = function (row) {
        var cell = row.cells[col];
        var v = cell.getAttribute('data-value');
        if (v === null) { v = cell.textContent.trim(); }
        var n = parseFloat(v);
        return (v !== '' && !isNaN(n) && isFinite(v)) ? [0, n] : (v === '' ? [2, 0] : [1, v]);
      };
      rows.sort(function (a, b) {
        var ka = key(a), kb = key(b);
        if (ka[0] !== kb[0]) { return ka[0] - kb[0]; }  /* numbers, then text, blanks last */
        var c = ka[1] < kb[1] ? -1 : (ka[1] > kb[1] ? 1 : 0);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
#failures td, #run td, #inputs td { white-space: normal; word-break: break-all; }
td.text, th.text { text-align: left; }
table.sortable th, table.paged th { cursor: pointer; background: #f0f0f0; user-select: none; }
table.sortable th[data-order=asc]::after, table.paged th[data-order=asc]::after {
  content: " \\25B2"; }
table.sortable th[data-order=desc]::after, table.paged th[data-order=desc]::after {
  content: " \\25BC"; }
tr.hit td { background: #fde8e8; }
.table-scroll { overflow-x: auto; max-width: 100%; }
#ranking td:nth-child(3), #ranking td:nth-child(4) { white-space: normal; min-width: 12em; }
.table-tools { display: flex; flex-wrap: wrap; gap: 0.6em; align-items: center; }
.hit-card { border-top: 1px solid #ddd; margin-top: 1em; padding-top: 0.4em; }
.hit-facts { margin: 0.2em 0 0.6em; }
.viewer3d { width: 100%; max-width: 720px; height: 460px; position: relative;
  border: 1px solid #ccc; }
.viewer-note { font-size: 0.8em; color: #555; margin: 0.2em 0 0.8em; }
@media print { .viewer-box, .table-tools { display: none; } }
img { max-width: 100%; border: 1px solid #eee; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; vertical-align: middle; }
.error { color: #a00; } code, pre { font-size: 0.85em; } pre { background: #f7f7f7; padding: 6px; }
"""


def esc(value) -> str:
    """HTML-escape ``str(value)``."""
    return html.escape(str(value), quote=True)


def simple_table_html(rows: list[dict], columns: list[str], table_id: str) -> str:
    """A plain (sortable) table of dict rows."""
    if not rows:
        return "<p>None.</p>"
    head = "".join(f'<th class="text">{esc(c)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="text">{esc("" if r.get(c) is None else r.get(c))}</td>'
                         for c in columns) + "</tr>" for r in rows)
    return (f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


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


def software_versions() -> dict[str, str]:
    """Versions of Python and the packages the screen and the report use."""
    from .fit import software_versions as run_versions

    return run_versions(extra=("matplotlib",))


def input_checksums(results: Results, view: MapView | None) -> list[dict]:
    """sha256 of the files the report read (the results tables, run.json and the map)."""
    from .maps import file_sha256

    files = dict(results.files)
    if view is not None and view.path:
        files["map"] = Path(view.path)
    return [{"input": k, "path": str(p), "bytes": p.stat().st_size, "sha256": file_sha256(p)}
            for k, p in files.items()]


def hit_title(row: dict) -> str:
    """``rank r: candidate (name) (score s, hits h, q = q)`` of a ranking row."""
    q = "" if row.get("qvalue") is None else f", q = {row['qvalue']:.3g}"
    name = f" — {row['name']}" if row.get("name") else ""
    score = "" if row.get("score") is None else format(row["score"], ".4f")
    return f"rank {row['rank']}: {row['candidate']}{name} (score {score}, hits {row['hits']}{q})"


def hit_facts_html(row: dict) -> str:
    """What the candidate is: name (linked), organism, gene, taxon, domain ranges, source."""
    facts = []
    if row.get("name"):
        name = esc(row["name"])
        if row.get("url"):
            name = f'<a href="{esc(row["url"])}" target="_blank" rel="noopener">{name}</a>'
        facts.append(f"<b>{name}</b>")
    if row.get("organism"):
        taxon = f" (taxon {row['taxid']})" if row.get("taxid") else ""
        facts.append(f"<i>{esc(row['organism'])}</i>{esc(taxon)}")
    if row.get("gene"):
        facts.append(f"gene {esc(row['gene'])}")
    if row.get("residue_ranges"):
        of = f" of {esc(row['parent'])}" if row.get("parent") else ""
        facts.append(f"residues {esc(row['residue_ranges'])}{of}")
    if row.get("url") and not row.get("name"):
        facts.append(f'<a href="{esc(row["url"])}" target="_blank" rel="noopener">'
                     f"{esc(row['url'])}</a>")
    if not facts:
        facts.append("no name known (a local file without a header naming it)")
    return f'<p class="hit-facts">{" · ".join(facts)}</p>'


def hit_section_html(exports: list[HitExport], view: MapView | None,
                     report_dir: Path | None = None, viewers: bool = True) -> tuple[str, int]:
    """Each top hit: what it is, a 3D view of it in the density, and its pictures.

    The pictures are also written as ``report_dir/hits/rank<r>_<candidate>.png`` when
    ``report_dir`` is given. Returns ``(html, number of images)``.
    """
    from .viewer import hit_payload, viewer_html

    parts, n_images = [], 0
    if report_dir is not None:
        (report_dir / HITS_DIR).mkdir(parents=True, exist_ok=True)
    for hit in exports:
        row = hit.row
        title = hit_title(row)
        parts.append(f'<div class="hit-card"><h3 id="hit-{row["rank"]}"><span class="swatch" '
                     f'style="background:{hit.colour}"></span> {esc(title)}</h3>'
                     f"{hit_facts_html(row)}")
        if hit.xyz is None:
            parts.append(f'<p class="error">No pictures: {esc(hit.error)}</p></div>')
            continue
        if view is None:
            parts.append("<p>No map given: no pictures (use --map or --prepared).</p></div>")
            continue
        if viewers and hit.atoms is not None:
            payload = hit_payload(view.data, view.origin, view.voxel_size, view.threshold,
                                  hit.atoms, hit.xyz, hit.colour, title)
            parts.append(viewer_html(int(row["rank"]), payload))
        png = plot_hit_views(view, hit.xyz, title, hit.colour, hit.trace)
        if report_dir is not None:
            name = f"rank{row['rank']}_{safe_filename(row['candidate'])}.png"
            (report_dir / HITS_DIR / name).write_bytes(base64.b64decode(png))
        parts.append(f'<img class="hit-view" alt="{esc(title)}" '
                     f'src="data:image/png;base64,{png}"></div>')
        n_images += 1
    return "\n".join(parts), n_images


def problems_rows(results: Results, exports: list[HitExport]) -> list[dict]:
    """The failures table of the screen plus the report's own export errors."""
    rows = results.failures.to_pylist()
    rows += [{"candidate": e.row["candidate"], "source": e.row.get("source"), "stage": "report",
              "reason": e.error} for e in exports if e.error]
    return rows


def render_html(results: Results, null, exports: list[HitExport], view: MapView | None,
                report_dir: Path, top: int, cxc: Path | None) -> str:
    """Assemble the report page (one self-contained HTML string)."""
    from .ranking_table import PAGE_SIZE, ranking_section_html, table_script
    from .viewer import viewer_library_html

    ranking = results.ranking
    significant = [r for r in ranking.select(["candidate", "name", "qvalue"]).to_pylist()
                   if r["qvalue"] is not None and r["qvalue"] < Q_HIT]
    hits = [r["candidate"] + (f" {r['name']}" if r["name"] else "") for r in significant[:20]]
    more = f", … {len(significant) - 20} more" if len(significant) > 20 else ""
    hit_names = f" ({esc(', '.join(hits))}{more})" if hits else ""
    hits_html, _ = hit_section_html(exports, view, report_dir)
    models = {e.row["candidate"]: (None if e.model_path is None
                                   else rel_path(e.model_path, report_dir), e.colour)
              for e in exports}
    downloads = [(f"{name} (all rows)", rel_path(path, report_dir))
                 for name, path in results.files.items() if name.endswith(".parquet")]
    if (report_dir / "ranking.tsv").exists():
        downloads.insert(0, ("ranking.tsv (all rows)", "ranking.tsv"))
    plots = ""
    if ranking.num_rows:
        plots = (f'<img id="score-size" alt="score versus size" '
                 f'src="data:image/png;base64,{plot_score_vs_size(ranking, null, top)}">'
                 f'<img id="significance" alt="significance" '
                 f'src="data:image/png;base64,{plot_significance(ranking, null, top)}">')
    from .viewer import VIEWER_LICENSE, VIEWER_NAME, VIEWER_VERSION

    versions = [{"software": k, "version": v} for k, v in software_versions().items()]
    versions.append({"software": f"{VIEWER_NAME} (3D viewer, {VIEWER_LICENSE}, inlined)",
                     "version": VIEWER_VERSION})
    cxc_html = (f"<p>ChimeraX: <code>chimerax {esc(rel_path(cxc, report_dir))}</code> opens the "
                f"map and the top hits coloured by rank (paths relative to the report folder)."
                f"</p>" if cxc else "")
    map_text = (f"{esc(view.path or 'prepared map')}, contour {view.threshold}"
                if view is not None else "no map given")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>difffit-screen report: {esc(results.folder.name)}</title>
<style>{CSS}</style></head>
<body>
<h1>difffit-screen report</h1>
<p id="summary">{ranking.num_rows} candidates ranked, {len(hits)} with q &lt; {Q_HIT}{hit_names};
{results.failures.num_rows} failed. Results: <code>{esc(results.folder)}</code>.
Map: <code>{map_text}</code>.</p>
{cxc_html}
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
{ranking_section_html(ranking, models, FIELD_DOCS, downloads)}
</div>
<h2>Score, size and significance</h2>
<p>{esc(null.describe())}</p>
{plots}
<h2>Failures and problems</h2>
{simple_table_html(problems_rows(results, exports), ["candidate", "source", "stage", "reason"],
                   "failures")}
<h2>Run</h2>
{run_section_html(results.run)}
<h3>Inputs read by this report</h3>
{simple_table_html(input_checksums(results, view), ["input", "path", "bytes", "sha256"],
                   "inputs")}
<h3>Software (report)</h3>
{simple_table_html(versions, ["software", "version"], "software")}
<script>{SORT_JS}</script>
<script>{table_script()}</script>
{viewer_library_html() if "viewer3d" in hits_html else ""}
</body></html>
"""


# --- entry points -----------------------------------------------------------------------------

def write_report(results_dir: str | os.PathLike, map_path: str | os.PathLike | None = None,
                 prepared: str | os.PathLike | None = None, threshold: float | None = None,
                 top: int = DEFAULT_TOP) -> Path:
    """Write ``RESULTS_DIR/report/`` (index.html, models/, top_hits.cxc, the map copy).

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

    Returns
    -------
    Path
        The ``index.html`` written.
    """
    from .ranking_table import write_ranking_tsv
    from .significance import fit_null_model

    results = read_results(results_dir)
    report_dir = results.folder / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    view = load_map_view(map_path, prepared, threshold, results.run, results.folder)
    exports = export_top_hits(results.ranking, report_dir, top, results.folder)
    map_file = copy_map(view, report_dir) if view is not None else None
    resolution = find_run_value(results.run, "resolution")
    cxc = write_cxc(report_dir / "top_hits.cxc", exports, map_file,
                    view.threshold if view is not None else None,
                    float(resolution) if isinstance(resolution, int | float) else None)
    null = fit_null_model(results.ranking)
    write_ranking_tsv(results.ranking, report_dir / "ranking.tsv")
    page = render_html(results, null, exports, view, report_dir, top, cxc)
    index = report_dir / "index.html"
    tmp = index.with_name(index.name + ".part")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, index)
    return index


def add_report_arguments(p) -> None:
    """Add the ``report`` sub-command's arguments to parser ``p``."""
    p.add_argument("results", help="results folder of a screen (with ranking.parquet)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prepared", help="prepared map (.npz) of the screen")
    src.add_argument("--map", help="the screen's map (MRC); default: the one in run.json")
    p.add_argument("--threshold", type=float,
                   help="contour level (default: the prepared map's, or run.json's)")
    p.add_argument("--top", type=int, default=DEFAULT_TOP,
                   help=f"top hits to export and picture (default {DEFAULT_TOP})")


def run_report_command(args) -> int:
    """Run ``difffit-screen report``; prints the report's path."""
    if args.top < 0:
        raise InputError(f"--top {args.top}: must be zero or positive")
    index = write_report(args.results, map_path=args.map, prepared=args.prepared,
                         threshold=args.threshold, top=args.top)
    print(index)
    return 0
