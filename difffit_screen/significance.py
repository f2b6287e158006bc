"""Significance of a screen's hits: z-scores, p-values and Benjamini-Hochberg q-values.

The question asked of every candidate is "does its best fit score higher than the library's fits
in this map usually do?". The library itself supplies the null distribution: most candidates are
not in the map, so the bulk of the score distribution describes wrong answers, and the true hits
sit in its upper tail. The method follows DomainFit (``pval_from_solutions.R``: Fisher z of the
fit score, a normal null fitted to the central part of the distribution with fdrtool's ``pct0``
idea, one-sided p-values, Benjamini-Hochberg), with a robust size correction added.

Method (libraries of at least :data:`MIN_LIBRARY` scored candidates)
----------------------------------------------------------------------
1. **Fisher z.** Each candidate's best-fit ``score`` (a correlation about the mean, in [-1, 1]) is
   transformed to ``y = arctanh(score)`` (clipped to ``|score| <= 1 - 1e-6``), which makes the
   spread of correlations roughly normal and comparable across the range.
2. **Size correction.** Correlation scores depend on the candidate's size (a small domain can sit
   in a patch of density that a large protein cannot). ``y`` is regressed on ``x = log(n_residues)``
   (``log(n_atoms)`` where residue counts are missing) with the Theil-Sen estimator (median of
   pairwise slopes, robust to ~29 % outliers, so the hits do not pull the line), and the
   residuals ``r = y - (a + b x)`` are used from here on. Candidates with no size get ``x`` = the
   library's median ``x``. The correction is skipped (``b = 0``, ``a = median(y)``) when sizes are
   known for fewer than :data:`MIN_LIBRARY` candidates or span less than a factor 1.1.
3. **Null fit.** The null is a normal ``N(mu, sigma)`` with ``mu = median(r)`` and ``sigma`` the
   maximum-likelihood scale of a normal truncated to the central window
   ``|r - mu| <= c``, where ``c`` is the :data:`PCT0` quantile of ``|r - mu|`` (the 75 % of the
   library closest to the median; fdrtool's ``pct0`` approach). Hits in the tail lie outside the
   window and so inflate neither ``mu`` nor ``sigma``. ``sigma`` falls back to ``1.4826 * MAD``
   if the window holds fewer than 5 distinct values, and is never below :data:`SCALE_FLOOR`.
4. **z, p, q.** ``zscore = (r - mu) / sigma``; ``pvalue`` is the one-sided upper-tail
   probability ``1 - Phi(zscore)``; ``qvalue`` is the Benjamini-Hochberg adjusted p-value over
   all the screen's candidates (``m`` = number of rows of the ranking).

Small libraries (fewer than :data:`MIN_LIBRARY` scored candidates)
-------------------------------------------------------------------
No size correction (a slope from a handful of points is noise). The null is deliberately
conservative: ``mu = median(y)``, ``sigma = max(sd(y), 1.4826 * MAD(y), SCALE_FLOOR)`` where
``sd`` is the ordinary standard deviation *including* the hits (which widens it), and p-values come
from Student's t with ``n - 1`` degrees of freedom (heavier tails than the normal). With fewer
than :data:`MIN_NULL` scored candidates there is no null at all: ``zscore`` is null and
``pvalue = qvalue = 1``.

Candidates without an acceptable fit
------------------------------------
A candidate whose best fit has ``fit_ok == False`` (too few atoms inside the contour) *counts in
the null* (it is a library member and its score is part of the distribution of wrong answers;
leaving it out would condition the null on a post-hoc filter) and keeps its ``zscore``, but gets
``pvalue = 1``: a fit that is mostly outside the density is never reported as a hit. A candidate
with a missing or non-finite score is left out of the null and gets a null ``zscore`` and
``pvalue = 1``. Both still count in the Benjamini-Hochberg ``m``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from scipy import optimize, special

MIN_LIBRARY = 8
"""Scored candidates needed for the size correction and the fitted normal null."""

MIN_NULL = 3
"""Scored candidates needed for any null at all (below: p = 1 for every candidate)."""

PCT0 = 0.75
"""Fraction of the library, closest to the median, used to fit the null's scale."""

SCALE_FLOOR = 0.01
"""Smallest null scale in Fisher-z units (≈ 0.01 in correlation): smaller differences between
candidates are not taken as evidence."""

FISHER_CLIP = 1.0 - 1e-6
MAD_TO_SD = 1.4826
MIN_SIZE_SPAN = np.log(1.1)


@dataclass
class NullModel:
    """The fitted null of one screen and the per-candidate statistics derived from it.

    Attributes
    ----------
    method : str
        ``"central-normal"`` (size-corrected, fitted normal null), ``"small-library-t"``
        (conservative Student-t null, no size correction) or ``"none"`` (too few candidates).
    n_null : int
        Number of candidates whose scores form the null (finite scores).
    size_variable : str or None
        ``"n_residues"``, ``"n_atoms"`` or None when no size correction was applied.
    slope, intercept : float
        Size trend ``y ≈ intercept + slope * log(size)`` in Fisher-z units (0 and median(y) when
        no correction was applied).
    loc, scale : float
        Location and scale of the null of the (corrected) Fisher-z scores.
    df : float or None
        Degrees of freedom of the Student-t null (None for the normal null).
    fisher_z, log_size, corrected, zscore, pvalue, qvalue : np.ndarray
        ``(N,)`` arrays in the ranking's row order (NaN where undefined).
    in_null : np.ndarray
        ``(N,)`` bool, candidates that form the null.
    """

    method: str
    n_null: int
    size_variable: str | None
    slope: float
    intercept: float
    loc: float
    scale: float
    df: float | None
    pct0: float = PCT0
    fisher_z: np.ndarray = field(default_factory=lambda: np.zeros(0))
    log_size: np.ndarray = field(default_factory=lambda: np.zeros(0))
    corrected: np.ndarray = field(default_factory=lambda: np.zeros(0))
    zscore: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pvalue: np.ndarray = field(default_factory=lambda: np.zeros(0))
    qvalue: np.ndarray = field(default_factory=lambda: np.zeros(0))
    in_null: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def describe(self) -> str:
        """Return a one-paragraph, human-readable description of the fitted null."""
        if self.method == "none":
            return (f"Only {self.n_null} scored candidate(s): no null distribution can be "
                    f"estimated (fewer than {MIN_NULL}); every p-value is 1.")
        if self.method == "small-library-t":
            return (f"Small library ({self.n_null} scored candidates, fewer than {MIN_LIBRARY}): "
                    f"no size correction; conservative Student-t null on Fisher z of the score, "
                    f"location {self.loc:.4f} (median), scale {self.scale:.4f} "
                    f"(max of SD, 1.4826·MAD, {SCALE_FLOOR}), {self.df:g} degrees of freedom.")
        size = (f"size-corrected by a Theil-Sen fit on log({self.size_variable}) "
                f"(slope {self.slope:+.4f} per log unit, intercept {self.intercept:.4f})"
                if self.size_variable else "not size-corrected (sizes missing or too uniform)")
        return (f"Fisher z of the score over {self.n_null} scored candidates, {size}; normal null "
                f"with location {self.loc:.4f} (median) and scale {self.scale:.4f} (truncated-"
                f"normal fit to the central {self.pct0:.0%}); one-sided p-values; "
                f"Benjamini-Hochberg q-values over all candidates.")


def fisher_z(score: np.ndarray) -> np.ndarray:
    """Return ``arctanh(score)`` with ``score`` clipped to ``±(1 - 1e-6)`` (NaN stays NaN)."""
    s = np.asarray(score, dtype=np.float64)
    return np.arctanh(np.clip(s, -FISHER_CLIP, FISHER_CLIP))


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


def fit_size_trend(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Robust line ``y ≈ intercept + slope * x`` by Theil-Sen; returns ``(slope, intercept)``."""
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    dx = x[:, None] - x  # every pair, as scipy.stats.theilslopes does (scipy.stats itself is
    dy = y[:, None] - y  # not imported: it would add 0.3 s to every fit run's start-up)
    up = dx > 0
    slope = float(np.median(dy[up] / dx[up])) if up.any() else 0.0
    return slope, float(np.median(y) - slope * np.median(x))


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
    mad_scale = MAD_TO_SD * float(np.median(dev))
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
    mad_scale = MAD_TO_SD * float(np.median(np.abs(v - loc)))
    return loc, max(sd, mad_scale, SCALE_FLOOR), float(max(v.size - 1, 1))


def pick_log_size(ranking: pa.Table) -> tuple[np.ndarray, str | None]:
    """Return ``(log_size, variable)``: log(n_residues), else log(n_atoms), NaN where unknown."""
    for name in ("n_residues", "n_atoms"):
        if name not in ranking.column_names:
            continue
        size = np.array([np.nan if v is None else float(v)
                         for v in ranking.column(name).to_pylist()])
        size[~(size > 0)] = np.nan
        if np.isfinite(size).sum() >= MIN_LIBRARY:
            return np.log(size), name
    return np.full(ranking.num_rows, np.nan), None


def column_as_float(ranking: pa.Table, name: str) -> np.ndarray:
    """Return a column as ``(N,)`` float64 with nulls as NaN (all NaN if the column is absent)."""
    if name not in ranking.column_names:
        return np.full(ranking.num_rows, np.nan)
    return np.array([np.nan if v is None else float(v) for v in ranking.column(name).to_pylist()])


def fit_null_model(ranking: pa.Table) -> NullModel:
    """Fit the screen's null distribution and compute z, p and q for every candidate.

    Parameters
    ----------
    ranking : pyarrow.Table
        One row per candidate with at least ``score``; ``fit_ok``, ``n_residues`` and
        ``n_atoms`` are used when present (see the module docstring for the method).

    Returns
    -------
    NullModel
        The fitted null and ``(N,)`` per-candidate arrays in the ranking's row order.
    """
    n = ranking.num_rows
    y = fisher_z(column_as_float(ranking, "score"))
    in_null = np.isfinite(y)
    fit_ok = (np.array([bool(v) for v in ranking.column("fit_ok").to_pylist()])
              if "fit_ok" in ranking.column_names else np.ones(n, bool))
    log_size, size_var = pick_log_size(ranking)
    n_null = int(in_null.sum())
    nan = np.full(n, np.nan)
    if n_null < MIN_NULL:
        p = np.ones(n)
        return NullModel("none", n_null, None, 0.0, float("nan"), float("nan"), float("nan"),
                         None, fisher_z=y, log_size=log_size, corrected=nan, zscore=nan,
                         pvalue=p, qvalue=adjust_bh(p), in_null=in_null)
    if n_null < MIN_LIBRARY:
        loc, scale, df = fit_small_library_null(y[in_null])
        z = (y - loc) / scale
        p = np.where(in_null & fit_ok, special.stdtr(df, -z), 1.0)
        return NullModel("small-library-t", n_null, None, 0.0, loc, loc, scale, df,
                         fisher_z=y, log_size=log_size, corrected=y, zscore=z, pvalue=p,
                         qvalue=adjust_bh(p), in_null=in_null)
    corrected, slope, intercept, size_var = correct_for_size(y, log_size, in_null, size_var)
    loc, scale = fit_central_normal(corrected[in_null])
    z = (corrected - loc) / scale
    p = np.where(in_null & fit_ok, special.ndtr(-z), 1.0)
    return NullModel("central-normal", n_null, size_var, slope, intercept, loc, scale, None,
                     fisher_z=y, log_size=log_size, corrected=corrected, zscore=z, pvalue=p,
                     qvalue=adjust_bh(p), in_null=in_null)


def correct_for_size(y: np.ndarray, log_size: np.ndarray, in_null: np.ndarray,
                     size_var: str | None) -> tuple[np.ndarray, float, float, str | None]:
    """Remove the robust size trend from Fisher-z scores ``y``.

    Returns ``(residuals, slope, intercept, size_variable)``; when the trend cannot be fitted
    (too few sizes, or sizes spanning less than a factor 1.1) the residuals are ``y - median``
    with slope 0 and ``size_variable`` None. Candidates of unknown size are corrected as if of the
    library's median size.
    """
    known = in_null & np.isfinite(log_size)
    if (size_var is None or known.sum() < MIN_LIBRARY
            or np.ptp(log_size[known]) < MIN_SIZE_SPAN):
        centre = float(np.median(y[in_null]))
        return y - centre, 0.0, centre, None
    slope, intercept = fit_size_trend(y[known], log_size[known])
    x = np.where(np.isfinite(log_size), log_size, np.median(log_size[known]))
    return y - (intercept + slope * x), slope, intercept, size_var


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
        The same table with float64 ``zscore`` (null where undefined), ``pvalue`` and ``qvalue``.
    """
    model = fit_null_model(ranking)
    out = ranking
    for name, values in (("zscore", model.zscore), ("pvalue", model.pvalue),
                         ("qvalue", model.qvalue)):
        arr = pa.array([None if not np.isfinite(v) else float(v) for v in values],
                       type=pa.float64())
        if name in out.column_names:
            idx = out.column_names.index(name)
            out = out.set_column(idx, out.schema.field(name).with_type(pa.float64()), arr)
        else:
            out = out.append_column(pa.field(name, pa.float64()), arr)
    return out
