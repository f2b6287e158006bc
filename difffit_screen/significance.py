"""Significance of a screen's hits: z-scores, p-values and Benjamini-Hochberg q-values.

The question asked of every candidate is "does its best fit score higher than fits of
candidates *of its size* in this map usually do?". The library itself supplies the null: most
candidates are not in the map, so the bulk of the score distribution describes wrong answers,
and the true hits sit in its upper tail. The method follows DomainFit
(``pval_from_solutions.R``: Fisher z of the fit score, a null fitted to the central part of the
distribution with fdrtool's ``pct0`` idea, one-sided p-values, Benjamini-Hochberg), with a size
correction that never extrapolates and an extreme-value tail (the score is a best of many).

Why size, and why windows
-------------------------
A candidate's best score depends on its size, differently on each kind of map: in a whole map
a small candidate finds some subunit's density to sit in, a large one cannot fit at all; in a
segment, candidates much larger than the segment stick out. A straight line fitted to score
against log(size) (the previous method, Theil-Sen) extrapolates past the few largest or
smallest candidates and turned "large and mediocre" into z = 8 (six false hits at q < 1e-2 in a
100-decoy screen of a tetramer map). Monotone (isotonic) fits do not extrapolate, but they fit
the extremes exactly, so a true hit at either end of the size range would become its own null.
Here each candidate is compared with the ``W`` library members closest to it in size (a
*window*; ``W = clip(3 sqrt(n), 30, n)``): the window is always ``W`` members wide, shifted
inwards at both ends of the size range, so the null of the largest candidate is that of the
``W`` largest, never a line continued beyond them, and a hit moves its own window's median by
at most one rank.

Method (libraries of at least :data:`MIN_LIBRARY` scored candidates)
----------------------------------------------------------------------
1. **Fisher z.** ``y = arctanh(score)`` (clipped to ``|score| <= 1 - 1e-6``).
2. **Location per size window.** In candidate ``i``'s window (in ``x = log(n_residues)``, or
   ``log(n_atoms)`` where residue counts are missing) a resistant line is fitted (Tukey: the
   slope between the medians of the smallest and the largest thirds); ``location_i`` is the
   larger of that line at ``x_i`` and the window's median (:func:`locate_by_size`). Candidates
   of unknown size, and libraries with too few sized candidates for more than one window of
   :data:`MIN_WINDOW`, use the whole library (no size correction).
3. **Spread.** ``spread_i = max(1.4826 MAD of the window's residuals from its line, s,
   SCALE_FLOOR)``, where ``s`` is the scale of a normal fitted to the central :data:`PCT0` of
   all residuals ``y - location`` (maximum likelihood of the truncated normal; the hits in the
   tail inflate neither). A window is never sharper than the library as a whole.
4. **z, p, q.** ``zscore = (y - location) / spread`` (robust standard deviations); ``pvalue``
   is the upper tail of an extreme-value (Gumbel) distribution with the window's median and
   median absolute deviation (:func:`gumbel_sf`), floored at :func:`p_floor` (no p-value
   smaller than the library can support); ``qvalue`` is the Benjamini-Hochberg adjusted p-value
   over all the screen's candidates (``m`` = rows of the ranking).

Why an extreme-value tail
-------------------------
A candidate's score is the *best* of its search: the maximum over many poses, so its null
distribution is that of a maximum, whose upper tail is exponential (Gumbel), not Gaussian:
the reason BLAST's and DALI's scores get extreme-value statistics. A normal or Student-t tail
with the same centre and spread is far too thin there: in the haemoglobin calibration with
the library split into domains, two 46- and 52-residue helical fragments (small candidates get
the most distinct poses in a whole map, and helices fit helical density) sat 4.6 robust
standard deviations above their window, p = 2e-5 under a t and q = 0.001-0.003 in the
decoy-only screen; under the Gumbel with the same median and MAD they get p = 4e-3 and q > 0.2,
while the natives (50 standard deviations) keep the floor. In simulated decoy-only libraries of
best-of-search scores (``tests/test_significance.py``) the t null gave a discovery in 19 % of
screens, the Gumbel in 0.5 %. On a Gaussian null the Gumbel tail is conservative (1.3 % of
p-values below 0.05), the price for not trusting a thin tail.

When it is valid, and when not
------------------------------
The null assumes that most candidates of each size window are wrong answers. It holds for a
library screen (hundreds of unrelated models); it does not hold for a library made mostly of
homologues of the answer (their scores form the "null" and hide each other), nor for a run
of a few candidates. Small libraries (fewer than :data:`MIN_LIBRARY` scored candidates) get
no size correction and a deliberately conservative null: ``location = median(y)``,
``spread = max(sd(y), 1.4826 MAD(y), SCALE_FLOOR)`` with the ordinary standard deviation
*including* the hits, Student's t with ``n - 1`` degrees of freedom, and the same floor (for 5
candidates about 1e-4). With fewer than :data:`MIN_NULL` there is no null: ``pvalue = 1``.
:meth:`NullModel.describe` says which case applied; it is written to ``run.json``, the ranking
table's metadata and the report.

Candidates that are never significant
-------------------------------------
A candidate whose best fit has ``fit_ok == False`` (too few atoms inside the contour), or
whose best fit has fewer than :data:`MIN_INSIDE` of its atoms inside the contour (a fit largely
outside the density), or that is a predicted model with fewer than :data:`MIN_CONFIDENT` of its
residues at pLDDT >= 50 (mostly predicted disorder: AlphaFold's "very low" band, not a
structure whose fit can name anything; column ``confident_fraction``), *counts in the null*
(it is a library member; leaving it out would condition the null on a post-hoc filter) and
keeps its ``zscore``, but gets ``pvalue = 1``. A candidate with a missing or non-finite score
is left out of the null and gets a null ``zscore`` and ``pvalue = 1``. All of them count in
the Benjamini-Hochberg ``m``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from scipy import special

MIN_LIBRARY = 8
"""Scored candidates needed for the fitted (non-conservative) null."""

MIN_WINDOW = 30
"""Smallest size window; libraries with fewer sized candidates get no size correction."""

WINDOW_PER_SQRT_N = 3.0
"""Size window ``W = clip(3 sqrt(n), MIN_WINDOW, n)`` (100 candidates: 30; 10,000: 300)."""

GUMBEL_MEDIAN = 0.36651292058166435
"""Median of the standard Gumbel distribution, ``-ln(ln 2)``."""

GUMBEL_MAD = 0.7670492513257082
"""Median absolute deviation of the standard Gumbel distribution (from its median)."""

Z_EXTRA = 3.0
"""Standard deviations the fitted null is trusted beyond the ``1/n`` quantile (:func:`p_floor`)."""

MIN_INSIDE = 0.3
"""Best fits with fewer of their atoms inside the contour never get a p-value below 1."""

MIN_CONFIDENT = 0.5
"""Predicted models with fewer of their residues at pLDDT >= 50 never get a p-value below 1."""

MIN_NULL = 3
"""Scored candidates needed for any null at all (below: p = 1 for every candidate)."""

PCT0 = 0.75
"""Fraction of the library, closest to the median, used to fit the null's scale."""

SCALE_FLOOR = 0.01
"""Smallest null scale in Fisher-z units (≈ 0.01 in correlation): smaller differences between
candidates are not taken as evidence."""

METADATA_KEY = "difffit_screen.significance"
"""Schema metadata key of the ranking table holding the null's summary (JSON)."""

FISHER_CLIP = 1.0 - 1e-6
MAD_TO_SD = 1.4826
"""The median absolute deviation of a normal sample times this estimates its standard deviation."""


def robust_sd(values: np.ndarray, centre: float | np.ndarray | None = None,
              axis: int | None = None) -> float | np.ndarray:
    """The robust standard deviation ``MAD_TO_SD * median(|values - centre|)`` (1.4826 MAD).

    Parameters
    ----------
    values : np.ndarray
        The sample (any shape).
    centre : float or np.ndarray, optional
        Where deviations are measured from; default the median of ``values`` (along ``axis``).
    axis : int, optional
        Reduce along this axis only (an array of scales); default: the whole array (a float).

    Returns
    -------
    float or np.ndarray
        The scale (0 when more than half the values equal the centre).
    """
    v = np.asarray(values, dtype=np.float64)
    if axis is None:
        c = float(np.median(v)) if centre is None else centre
        return MAD_TO_SD * float(np.median(np.abs(v - c)))
    c = np.expand_dims(np.median(v, axis), axis) if centre is None else centre
    return MAD_TO_SD * np.median(np.abs(v - c), axis)


@dataclass
class NullModel:
    """The fitted null of one screen and the per-candidate statistics derived from it.

    Attributes
    ----------
    method : str
        ``"size-windowed-gumbel"`` (null per size window), ``"central-gumbel"`` (one null, no
        size correction), ``"small-library-t"`` (conservative, fewer than :data:`MIN_LIBRARY`
        candidates) or ``"none"`` (fewer than :data:`MIN_NULL`).
    n_null : int
        Number of candidates whose scores form the null (finite scores).
    size_variable : str or None
        ``"n_residues"``, ``"n_atoms"`` or None when no size correction was applied.
    window : int
        Candidates per size window (``n_null`` without size correction).
    loc, scale : float
        Library-wide location (median Fisher z) and the scale of the residuals' central normal.
    df : float or None
        Degrees of freedom of the small library's Student t (None otherwise: the fitted nulls
        have a Gumbel tail, :func:`gumbel_sf`).
    fisher_z, log_size, location, spread, zscore, pvalue, qvalue : np.ndarray
        ``(N,)`` arrays in the ranking's row order (NaN where undefined): ``location`` and
        ``spread`` are each candidate's null in Fisher-z units.
    in_null, eligible : np.ndarray
        ``(N,)`` bool: candidates that form the null; candidates that can get ``p < 1``.
    p_floor : float
        Smallest p-value reported (:func:`p_floor`).
    """

    method: str
    n_null: int
    size_variable: str | None
    window: int
    loc: float
    scale: float
    df: float | None
    pct0: float = PCT0
    fisher_z: np.ndarray = field(default_factory=lambda: np.zeros(0))
    log_size: np.ndarray = field(default_factory=lambda: np.zeros(0))
    location: np.ndarray = field(default_factory=lambda: np.zeros(0))
    spread: np.ndarray = field(default_factory=lambda: np.zeros(0))
    zscore: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pvalue: np.ndarray = field(default_factory=lambda: np.zeros(0))
    qvalue: np.ndarray = field(default_factory=lambda: np.zeros(0))
    in_null: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    eligible: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    p_floor: float = 1.0

    def describe(self) -> str:
        """Return a one-paragraph, human-readable description of the fitted null."""
        if self.method == "none":
            return (f"Only {self.n_null} scored candidate(s): no null distribution can be "
                    f"estimated (fewer than {MIN_NULL}); every p-value is 1.")
        floor = f"p-values floored at {self.p_floor:.1e} (what {self.n_null} candidates support)"
        if self.method == "small-library-t":
            return (f"Small library ({self.n_null} scored candidates, fewer than {MIN_LIBRARY}): "
                    f"no size correction; conservative Student-t null on Fisher z of the score, "
                    f"location {self.loc:.4f} (median), scale {self.scale:.4f} "
                    f"(max of SD, 1.4826·MAD, {SCALE_FLOOR}), {self.df:g} degrees of freedom; "
                    f"{floor}. Too few candidates for a library null: treat the p-values as a "
                    f"rough guide.")
        size = (f"compared with the {self.window} candidates closest in {self.size_variable} "
                f"(location: the higher of the window's median and its resistant line; "
                f"no extrapolation beyond the library's sizes)"
                if self.size_variable else
                "one null for all sizes (sizes missing, or too few candidates for size "
                "windows)")
        return (f"Fisher z of the score over {self.n_null} scored candidates, {size}; spread "
                f"at least {self.scale:.4f} (normal fit to the central {self.pct0:.0%} of the "
                f"residuals); p from the upper tail of a Gumbel (extreme-value) distribution with "
                f"the window's median and MAD, as suits a best-of-search score; {floor}; fits with "
                f"fewer than {MIN_INSIDE:.0%} of their atoms inside the contour, and predicted "
                f"models with fewer than {MIN_CONFIDENT:.0%} of their residues at pLDDT >= 50, "
                f"get p = 1; Benjamini-Hochberg q-values over all candidates.")

    def sf(self, z: np.ndarray) -> np.ndarray:
        """The null's upper tail ``P(Z >= z)`` at robust z-scores ``z`` (no floor)."""
        z = np.asarray(z, dtype=np.float64)
        return special.stdtr(self.df, -z) if self.df else gumbel_sf(z)

    def pdf(self, z: np.ndarray) -> np.ndarray:
        """The null's density at robust z-scores ``z`` (for plots against the z histogram)."""
        z = np.asarray(z, dtype=np.float64)
        if self.df:
            from scipy import stats  # heavy import, only for the report's plot

            return stats.t.pdf(z, self.df)
        a = MAD_TO_SD * GUMBEL_MAD
        u = a * z + GUMBEL_MEDIAN
        return a * np.exp(-u - np.exp(-u))

    def as_dict(self) -> dict:
        """Summary of the null (no per-candidate arrays), for ``run.json`` and table metadata."""
        num = lambda v: None if v is None or not np.isfinite(v) else float(v)  # noqa: E731
        return {"method": self.method, "n_null": self.n_null, "size_variable":
                self.size_variable, "window": self.window, "loc": num(self.loc),
                "scale": num(self.scale), "df": num(self.df), "p_floor": num(self.p_floor),
                "description": self.describe()}


def fisher_z(score: np.ndarray) -> np.ndarray:
    """Return ``arctanh(score)`` with ``score`` clipped to ``±(1 - 1e-6)`` (NaN stays NaN)."""
    s = np.asarray(score, dtype=np.float64)
    return np.arctanh(np.clip(s, -FISHER_CLIP, FISHER_CLIP))


def gumbel_sf(z: np.ndarray) -> np.ndarray:
    """Upper tail of the Gumbel distribution whose median is 0 and whose ``1.4826 MAD`` is 1.

    ``z`` is in the units that :func:`fit_null_model` uses (``(y - median) / (1.4826 MAD)``);
    with ``beta = 1.4826 MAD / (1.4826 GUMBEL_MAD)`` and ``mu = median - GUMBEL_MEDIAN beta``,
    ``P(Y >= y) = 1 - exp(-exp(-(y - mu) / beta))``, computed with ``expm1`` so that tiny
    tails keep their precision.

    Parameters
    ----------
    z : np.ndarray
        Robust z-scores (any shape).

    Returns
    -------
    np.ndarray
        Upper-tail probabilities, same shape.
    """
    u = MAD_TO_SD * GUMBEL_MAD * np.asarray(z, dtype=np.float64) + GUMBEL_MEDIAN
    return -np.expm1(-np.exp(-u))


def adjust_bh(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of ``(m,)`` p-values, in input order.

    ``q_(i) = min_{j >= i} min(1, m p_(j) / j)`` over p-values sorted ascending; NaN p-values
    are treated as 1.
    """
    p = np.asarray(pvalues, dtype=np.float64).copy()
    p[~np.isfinite(p)] = 1.0
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="mergesort")
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1].clip(max=1.0)
    q = np.empty(m)
    q[order] = q_sorted
    return q


def fit_central_normal(values: np.ndarray, pct0: float = PCT0) -> tuple[float, float]:
    """Fit a normal null to the central ``pct0`` of ``values``; returns ``(loc, scale)``.

    ``loc`` is the median. ``scale`` maximises the likelihood of the values within
    ``|v - loc| <= c`` (``c`` the ``pct0`` quantile of ``|v - loc|``) under a normal truncated to
    that window, so values in the tails (the hits) do not inflate it. Falls back to
    ``1.4826 * MAD`` when the window holds fewer than 5 distinct values. Never below
    :data:`SCALE_FLOOR`.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    loc = float(np.median(v))
    dev = np.abs(v - loc)
    mad_scale = robust_sd(v, loc)
    c = float(np.quantile(dev, pct0))
    window = v[dev <= c]
    if c <= 0 or np.unique(window).size < 5:
        return loc, max(mad_scale, SCALE_FLOOR)
    start = max(mad_scale, float(np.std(window)), 1e-12)

    def negloglik(log_s: float) -> float:
        s = np.exp(log_s)
        mass = special.ndtr(c / s) - special.ndtr(-c / s)
        logpdf = -0.5 * ((window - loc) / s) ** 2 - np.log(s) - 0.5 * np.log(2.0 * np.pi)
        return -(logpdf.sum() - window.size * np.log(mass))

    from scipy import optimize  # ~0.2 s to import: only where a null is fitted

    res = optimize.minimize_scalar(negloglik, bounds=(np.log(start / 10), np.log(start * 10)),
                                   method="bounded")
    scale = float(np.exp(res.x)) if res.success and np.isfinite(res.fun) else mad_scale
    return loc, max(scale, SCALE_FLOOR)


def fit_small_library_null(values: np.ndarray) -> tuple[float, float, float]:
    """Conservative null for a small library; returns ``(loc, scale, df)`` of a Student t.

    ``loc`` is the median, ``scale = max(sd, 1.4826 * MAD, SCALE_FLOOR)`` with the ordinary
    (hit-inflated) standard deviation, ``df = n - 1``.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    loc = float(np.median(v))
    sd = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    mad_scale = robust_sd(v, loc)
    return loc, max(sd, mad_scale, SCALE_FLOOR), float(max(v.size - 1, 1))


def pick_log_size(ranking: pa.Table) -> tuple[np.ndarray, str | None]:
    """Return ``(log_size, variable)``: log(n_residues), else log(n_atoms), NaN where unknown."""
    for name in ("n_residues", "n_atoms"):
        if name not in ranking.column_names:
            continue
        size = column_as_float(ranking, name)
        size[~(size > 0)] = np.nan
        if np.isfinite(size).sum() >= MIN_LIBRARY:
            return np.log(size), name
    return np.full(ranking.num_rows, np.nan), None


def column_as_float(ranking: pa.Table, name: str) -> np.ndarray:
    """Return a column as ``(N,)`` float64 with nulls as NaN (all NaN if the column is absent)."""
    if name not in ranking.column_names:
        return np.full(ranking.num_rows, np.nan)
    col = ranking.column(name).cast(pa.float64())
    return col.to_numpy(zero_copy_only=False).astype(np.float64)


def size_windows(log_size: np.ndarray, members: np.ndarray,
                 width: int) -> tuple[np.ndarray, np.ndarray]:
    """For every candidate, the ``width`` null members closest to it in size.

    Parameters
    ----------
    log_size : np.ndarray
        ``(N,)`` log sizes; NaN where unknown.
    members : np.ndarray
        ``(N,)`` bool, the null members to draw windows from (their sizes must be finite).
    width : int
        Window size (at most the number of members). A window is a run of ``width``
        consecutive members in size order, centred on the candidate's size rank and shifted
        inwards at both ends, so it never reaches past the library's sizes.

    Returns
    -------
    order : np.ndarray
        ``(M,)`` indices of the members, sorted by size.
    start : np.ndarray
        ``(N,)`` first position in ``order`` of each candidate's window (its members are
        ``order[start : start + width]``); -1 for candidates of unknown size (they use the
        whole null).
    """
    idx = np.flatnonzero(members)
    order = idx[np.argsort(log_size[idx], kind="mergesort")]
    width = min(width, len(order))
    start = np.full(len(log_size), -1, dtype=np.int64)
    known = np.isfinite(log_size)
    pos = np.searchsorted(log_size[order], log_size[known])
    start[known] = np.clip(pos - width // 2, 0, len(order) - width)
    return order, start


def p_floor(n_null: int) -> float:
    """Smallest p-value that a null fitted to ``n_null`` scores supports.

    The data show the null's tail down to about ``1/n``; the fitted distribution is trusted
    for :data:`Z_EXTRA` more standard deviations beyond that and no further:
    ``p_floor = Phi(-(Phi^-1(1 - 1/n) + Z_EXTRA))`` (100 candidates: 4.9e-8; 10,000: 4e-12).
    """
    n = max(int(n_null), 2)
    return float(special.ndtr(-(special.ndtri(1.0 - 1.0 / n) + Z_EXTRA)))


def fit_null_model(ranking: pa.Table) -> NullModel:
    """Fit the screen's null distribution and compute z, p and q for every candidate.

    Parameters
    ----------
    ranking : pyarrow.Table
        One row per candidate with at least ``score``; ``fit_ok``, ``inside_fraction``,
        ``confident_fraction``, ``n_residues`` and ``n_atoms`` are used when present (see the
        module docstring).

    Returns
    -------
    NullModel
        The fitted null and ``(N,)`` per-candidate arrays in the ranking's row order.
    """
    n = ranking.num_rows
    y = fisher_z(column_as_float(ranking, "score"))
    in_null = np.isfinite(y)
    fit_ok = (np.array([bool(v) for v in ranking.column("fit_ok").to_pylist()], dtype=bool)
              if "fit_ok" in ranking.column_names else np.ones(n, bool))
    inside = column_as_float(ranking, "inside_fraction")
    confident = column_as_float(ranking, "confident_fraction")
    eligible = in_null & fit_ok & ~(inside < MIN_INSIDE) & ~(confident < MIN_CONFIDENT)
    log_size, size_var = pick_log_size(ranking)
    n_null = int(in_null.sum())
    nan = np.full(n, np.nan)
    if n_null < MIN_NULL:
        p = np.ones(n)
        return NullModel("none", n_null, None, n_null, float("nan"), float("nan"), None,
                         fisher_z=y, log_size=log_size, location=nan, spread=nan, zscore=nan,
                         pvalue=p, qvalue=adjust_bh(p), in_null=in_null, eligible=eligible)
    floor = p_floor(n_null)
    if n_null < MIN_LIBRARY:
        loc, scale, df = fit_small_library_null(y[in_null])
        z = (y - loc) / scale
        p = np.where(eligible, np.maximum(special.stdtr(df, -z), floor), 1.0)
        return NullModel("small-library-t", n_null, None, n_null, loc, scale, df,
                         fisher_z=y, log_size=log_size, location=np.full(n, loc),
                         spread=np.full(n, scale), zscore=z, pvalue=p, qvalue=adjust_bh(p),
                         in_null=in_null, eligible=eligible, p_floor=floor)
    location, local_scale, size_var, width = locate_by_size(y, log_size, in_null, size_var)
    resid = y - location
    _, scale = fit_central_normal(resid[in_null])
    spread = combine_spread(local_scale, scale)
    z = resid / spread
    p = np.where(eligible, np.maximum(gumbel_sf(z), floor), 1.0)
    return NullModel("size-windowed-gumbel" if size_var else "central-gumbel", n_null, size_var,
                     width, float(np.median(y[in_null])), scale, None, fisher_z=y,
                     log_size=log_size,
                     location=location, spread=spread, zscore=z, pvalue=p, qvalue=adjust_bh(p),
                     in_null=in_null, eligible=eligible, p_floor=floor)


def combine_spread(local_scale: np.ndarray, library_scale: float) -> np.ndarray:
    """Each candidate's spread from its window's robust scale ``(N,)`` and the library's
    central-normal scale: the larger, and at least :data:`SCALE_FLOOR`."""
    return np.maximum(np.maximum(local_scale, library_scale), SCALE_FLOOR)


def locate_by_size(y: np.ndarray, log_size: np.ndarray, in_null: np.ndarray,
                   size_var: str | None) -> tuple[np.ndarray, np.ndarray, str | None, int]:
    """Each candidate's null location and robust scale from its size window.

    In each window (:func:`size_windows`, sorted by size) a resistant line is fitted (Tukey:
    the slope between the medians of the window's smallest and largest thirds; the level,
    the median of the window's values moved along that slope to the candidate's size). The
    location is the larger of that line at the candidate's size and the window's median: a
    plain median is biased at the ends of the size range when scores trend with size (the
    smallest candidate's window holds larger ones), the line removes that bias without leaving
    the window, and taking the larger of the two never makes a candidate look better than
    either would. Window starts are rounded to multiples of ``width // 20`` (exact up to 400
    candidates), so the cost is ``O(N)`` medians of ``20 N / width`` windows.

    Returns
    -------
    tuple
        ``(location, scale, size_variable, width)``: ``(N,)`` location and ``1.4826 MAD`` of
        the residuals from the window's line, in Fisher-z units. Without sizes, or with too
        few sized candidates for more than one window, every candidate gets the library's
        median and MAD, ``size_variable`` None and ``width`` the library size; candidates of
        unknown size get the library's values too.
    """
    n_null = int(in_null.sum())
    width = int(np.clip(round(WINDOW_PER_SQRT_N * np.sqrt(n_null)), MIN_WINDOW, n_null))
    sized = in_null & np.isfinite(log_size)
    centre = float(np.median(y[in_null]))
    location = np.full(y.shape, centre)
    scale = np.full(y.shape, robust_sd(y[in_null], centre))
    if size_var is None or sized.sum() < max(MIN_WINDOW, width + 1):
        return location, scale, None, n_null
    order, start = size_windows(log_size, sized, width)
    rows = np.flatnonzero(start >= 0)
    step = max(1, width // 20)
    anchor = np.clip(np.round(start[rows] / step).astype(np.int64) * step, 0,
                     len(order) - width)
    starts, which = np.unique(anchor, return_inverse=True)
    third = max(width // 3, 1)
    level0 = np.empty(len(starts))  # the line's value at log size 0
    slope = np.empty(len(starts))
    median = np.empty(len(starts))
    spread = np.empty(len(starts))
    for block in np.array_split(np.arange(len(starts)), max(1, len(starts) * width // 2**21)):
        members = order[starts[block][:, None] + np.arange(width)]
        xw, yw = log_size[members], y[members]  # (B, W), sorted by size
        dx = np.median(xw[:, -third:], 1) - np.median(xw[:, :third], 1)
        dy = np.median(yw[:, -third:], 1) - np.median(yw[:, :third], 1)
        slope[block] = np.divide(dy, dx, out=np.zeros_like(dy), where=dx > 0)
        resid0 = yw - slope[block][:, None] * xw
        level0[block] = np.median(resid0, axis=1)
        median[block] = np.median(yw, axis=1)
        resid = resid0 - level0[block][:, None]
        spread[block] = robust_sd(resid, axis=1)
    line = level0[which] + slope[which] * log_size[rows]
    location[rows] = np.maximum(line, median[which])
    scale[rows] = spread[which]
    return location, scale, size_var, width


def add_significance(ranking: pa.Table) -> pa.Table:
    """Return ``ranking`` with its ``zscore``, ``pvalue`` and ``qvalue`` columns filled.

    Row order, ranks and every other column are unchanged; the columns are added if absent.
    See the module docstring for the method.

    Parameters
    ----------
    ranking : pyarrow.Table
        One row per candidate (``RANKING_SCHEMA``), at least a ``score`` column.

    Returns
    -------
    pyarrow.Table
        The same table with float64 ``zscore`` (null where undefined), ``pvalue`` and
        ``qvalue``, and the null's summary (:meth:`NullModel.as_dict`) as JSON under the schema
        metadata key :data:`METADATA_KEY` (read it back with :func:`read_null_summary`).
    """
    model = fit_null_model(ranking)
    out = ranking
    for name, values in (("zscore", model.zscore), ("pvalue", model.pvalue),
                         ("qvalue", model.qvalue)):
        values = np.asarray(values, dtype=np.float64)
        arr = pa.array(values, type=pa.float64(), mask=~np.isfinite(values))
        if name in out.column_names:
            idx = out.column_names.index(name)
            out = out.set_column(idx, out.schema.field(name).with_type(pa.float64()), arr)
        else:
            out = out.append_column(pa.field(name, pa.float64()), arr)
    meta = dict(out.schema.metadata or {})
    meta[METADATA_KEY.encode()] = json.dumps(model.as_dict()).encode()
    return out.replace_schema_metadata(meta)


def read_null_summary(table: pa.Table) -> dict | None:
    """The null's summary that :func:`add_significance` stored in ``table``'s metadata."""
    raw = (table.schema.metadata or {}).get(METADATA_KEY.encode())
    return json.loads(raw) if raw else None
