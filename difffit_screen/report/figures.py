"""The report's pictures (matplotlib, base64 PNG): each top hit in the density, and the screen's
score-versus-size and significance plots."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pyarrow as pa

from .density import MapView, crop_indices
from .export import rank_colour
from .results import Q_HIT

__all__ = ["crop_box", "figure_to_base64", "fraction_outside", "plot_hit_views",
           "plot_score_vs_size", "plot_significance", "trace_segments"]

VIEW_MARGIN = 12.0
"""Å of map kept around a hit's atoms in its pictures."""

TRACE_MAX_GAP = 4.5
"""Å between consecutive CA (P) atoms above which the drawn trace is broken (chain breaks)."""

SLAB_HALF_WIDTH = 2.0
"""Å either side of a slice within which atoms are drawn on it."""

PANELS = ((0, 1, 2), (1, 0, 2), (2, 0, 1))
"""The hit pictures' columns: (projection axis, horizontal axis, vertical axis), x=0, y=1, z=2."""


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_to_base64(fig) -> str:
    """Render a matplotlib figure to a base64 PNG string and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    pyplot().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# --- one hit in the density -------------------------------------------------------------------

def crop_box(view: MapView, xyz: np.ndarray, margin: float = VIEW_MARGIN) -> tuple[slice, ...]:
    """Return ``(z, y, x)`` slices of the map around atoms ``xyz`` (``(N, 3)``, Å) + ``margin``
    (:func:`~difffit_screen.report.density.crop_indices`: all of it when the model lies
    outside the map)."""
    lo, hi = crop_indices(view.data.shape, view.origin, view.voxel_size, xyz, margin)
    return tuple(slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))


def crop_view(view: MapView, xyz: np.ndarray) -> MapView:
    """The part of ``view`` in :func:`crop_box` around atoms ``xyz`` (its own origin)."""
    box = crop_box(view, xyz)
    start = np.array([box[2].start, box[1].start, box[0].start])
    return MapView(view.data[box], view.origin + start * view.voxel_size, view.voxel_size,
                   view.threshold)


def extents(view: MapView) -> list[tuple[float, float]]:
    """``[(min, max)]`` along x, y and z of the map's voxels' edges (Å)."""
    return [(view.origin[a] - view.voxel_size[a] / 2,
             view.origin[a] + (view.data.shape[2 - a] - 0.5) * view.voxel_size[a])
            for a in range(3)]


def trace_segments(trace: np.ndarray, max_gap: float = TRACE_MAX_GAP) -> list[np.ndarray]:
    """Split a ``(N, 3)`` trace into runs of consecutive points closer than ``max_gap`` Å."""
    if len(trace) < 2:
        return [trace]
    breaks = np.nonzero(np.linalg.norm(np.diff(trace, axis=0), axis=1) > max_gap)[0] + 1
    return np.split(trace, breaks)


def orient(plane: np.ndarray, h: int, v: int) -> np.ndarray:
    """Return a 2-D map section (array axes in ``[z, y, x]`` order, one removed) as rows = the
    vertical world axis ``v`` and columns = the horizontal axis ``h``."""
    return plane if h < v else plane.T


def fraction_outside(view: MapView, xyz: np.ndarray) -> float:
    """Fraction of atoms ``xyz`` (``(N, 3)``, Å) outside the map's box."""
    idx = (xyz - view.origin) / view.voxel_size
    inside = np.all((idx >= -0.5) & (idx <= np.array(view.data.shape[::-1]) - 0.5), axis=1)
    return float(1.0 - inside.mean()) if len(xyz) else 0.0


def plot_hit_views(view: MapView, xyz: np.ndarray, title: str, colour: str,
                   trace: np.ndarray | None = None) -> str:
    """Pictures of one posed model in the density; returns a base64 PNG.

    Top row: maximum projections of the map (cropped to the model ± :data:`VIEW_MARGIN`) along
    x, y and z with the model's CA trace (``trace``, ``(M, 3)``; all atoms if not given) projected
    over them. Bottom row: the orthogonal slices through the
    model's centroid with the screen's contour and the atoms within ± :data:`SLAB_HALF_WIDTH` Å
    of each slice.
    """
    crop = crop_view(view, xyz)
    levels = (float(np.percentile(crop.data, 1)), float(crop.data.max()))
    edges = extents(crop)
    fig, axes = pyplot().subplots(2, 3, figsize=(10.5, 6.8))
    for col, (along, h, v) in enumerate(PANELS):
        extent = [*edges[h], *edges[v]]
        draw_projection(axes[0, col], crop, (along, h, v), extent, levels,
                        xyz if trace is None else trace, colour)
        draw_slice(axes[1, col], crop, (along, h, v), extent, levels, xyz, colour)
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


def draw_projection(ax, crop: MapView, axes: tuple[int, int, int], extent: list[float],
                    levels: tuple[float, float], trace: np.ndarray, colour: str) -> None:
    """The maximum projection of ``crop`` along ``axes[0]`` with the ``(M, 3)`` trace over it
    (``axes``: projection, horizontal and vertical axis; ``levels``: grey scale limits)."""
    along, h, v = axes
    proj = orient(crop.data.max(axis=2 - along), h, v)
    ax.imshow(proj, origin="lower", extent=extent, cmap="gray", vmin=levels[0], vmax=levels[1],
              interpolation="nearest")
    for segment in trace_segments(trace):
        ax.plot(segment[:, h], segment[:, v], c=colour, lw=0.9, alpha=0.85)
    ax.set_title(f"max projection along {'xyz'[along]}", fontsize=9)


def draw_slice(ax, crop: MapView, axes: tuple[int, int, int], extent: list[float],
               levels: tuple[float, float], xyz: np.ndarray, colour: str) -> None:
    """The slice of ``crop`` through the centroid of atoms ``xyz`` across ``axes[0]``, with the
    contour (cyan) and the atoms within ± :data:`SLAB_HALF_WIDTH` Å of it."""
    along, h, v = axes
    centre_idx = np.clip(np.round((xyz.mean(axis=0) - crop.origin) / crop.voxel_size).astype(int),
                         0, np.array(crop.data.shape[::-1]) - 1)
    slab = orient(np.take(crop.data, centre_idx[along], axis=2 - along), h, v)
    plane = crop.origin[along] + centre_idx[along] * crop.voxel_size[along]
    ax.imshow(slab, origin="lower", extent=extent, cmap="gray", vmin=levels[0], vmax=levels[1],
              interpolation="nearest")
    threshold = crop.threshold
    if threshold is not None and slab.min() < threshold < slab.max():
        hs = np.linspace(extent[0], extent[1], slab.shape[1])
        vs = np.linspace(extent[2], extent[3], slab.shape[0])
        ax.contour(hs, vs, slab, levels=[threshold], colors="cyan", linewidths=0.8)
    near = np.abs(xyz[:, along] - plane) <= SLAB_HALF_WIDTH
    ax.scatter(xyz[near, h], xyz[near, v], s=3.0, c=colour, alpha=0.9, linewidths=0)
    ax.set_title(f"slice {'xyz'[along]} = {plane:.1f} Å", fontsize=9)


# --- the screen -------------------------------------------------------------------------------

def plot_score_vs_size(ranking: pa.Table, null, top: int) -> str:
    """Score versus candidate size, hits (q < :data:`Q_HIT`) highlighted, top hits labelled,
    with each candidate's null (location and location + 3 spreads of its size window);
    returns a base64 PNG."""
    rows = ranking.to_pylist()
    size_var = null.size_variable or ("n_residues" if any(r["n_residues"] for r in rows)
                                      else "n_atoms")
    size = np.array([r[size_var] or np.nan for r in rows], float)
    score = np.array([np.nan if r["score"] is None else r["score"] for r in rows], float)
    q = np.array([1.0 if r["qvalue"] is None else r["qvalue"] for r in rows], float)
    ok = np.array([bool(r["fit_ok"]) for r in rows])
    fig, ax = pyplot().subplots(figsize=(7.5, 5))
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
                        textcoords="offset points", color=rank_colour(i))
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
    rows = ranking.to_pylist()
    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=(11, 4.6))
    draw_zscores(ax1, rows, null, top)
    draw_qvalues(ax2, rows, top)
    fig.tight_layout()
    return figure_to_base64(fig)


def draw_zscores(ax, rows: list[dict], null, top: int) -> None:
    """Histogram of the ranking ``rows``' z-scores, the null density, the ``top`` hits marked."""
    z = np.array([np.nan if r["zscore"] is None else r["zscore"] for r in rows], float)
    finite = z[np.isfinite(z)]
    if finite.size:
        ax.hist(finite, bins=max(10, min(60, finite.size // 2)), density=True, color="0.75",
                label="library")
        xs = np.linspace(min(finite.min(), -4), max(finite.max(), 4), 300)
        ax.plot(xs, null.pdf(xs), c="k", lw=1.2,
                label="null" + (f" (t, {null.df:g} df)" if null.df else " (Gumbel)"))
        for i, r in enumerate(rows[:top]):
            if np.isfinite(z[i]):
                ax.axvline(z[i], c=rank_colour(i), lw=1)
                ax.annotate(f"{r['rank']}", (z[i], ax.get_ylim()[1] * 0.92),
                            color=rank_colour(i), fontsize=8, ha="center")
    ax.set_xlabel("z-score (size-corrected Fisher z of the score)")
    ax.set_ylabel("density")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title("Scores against the fitted null")


def draw_qvalues(ax, rows: list[dict], top: int) -> None:
    """-log10(q) of the ranking ``rows``, most significant first, the hits and the next three
    labelled (the ``top`` hits in their rank colours)."""
    q = np.array([1.0 if r["qvalue"] is None else r["qvalue"] for r in rows], float)
    order = np.argsort(q, kind="stable")
    mlq = -np.log10(np.clip(q[order], 1e-300, 1.0))
    ax.plot(np.arange(1, len(q) + 1), mlq, "o", ms=4, c="0.45")
    ax.axhline(-math.log10(Q_HIT), c="crimson", ls="--", lw=1, label=f"q = {Q_HIT}")
    top_names = {r["candidate"]: i for i, r in enumerate(rows[:top])}
    n_label = min(top, int((q < Q_HIT).sum()) + 3)  # the hits and the next few
    for pos, idx in enumerate(order[:n_label]):
        name = rows[idx]["candidate"]
        colour = rank_colour(top_names[name]) if name in top_names else "k"
        ax.annotate(name, (pos + 1, mlq[pos]), fontsize=7, xytext=(4, 2),
                    textcoords="offset points", color=colour)
    ax.set_xlabel("candidates, most significant first")
    ax.set_ylabel("-log10 q (Benjamini-Hochberg)")
    ax.legend(fontsize=8)
    ax.set_title("Significance")
