"""The structure route: the residue contact graph and its recursive bisection by normalised cut.

Each bisection tries every partition of the current residue set, in sequence order, into one
inner segment and the rest (one or two cut points, so a domain may be discontinuous, like the
GroEL equatorial domain) and takes the one of lowest normalised cut ``cut/vol(A) + cut/vol(B)``:
the fraction of each part's contacts that cross the interface, small only for two compact
bodies that touch over a small face.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .residues import compactness

__all__ = ["DEFAULT_COMPACT_MAX", "DEFAULT_CONTACT_CUTOFF", "DEFAULT_NCUT_MAX", "best_bisection",
           "bisect_recursively", "contact_matrix", "score_bisections"]

DEFAULT_CONTACT_CUTOFF = 8.0
DEFAULT_NCUT_MAX = 0.05
DEFAULT_COMPACT_MAX = 2.0


def contact_matrix(xyz: np.ndarray, cutoff: float = DEFAULT_CONTACT_CUTOFF) -> np.ndarray:
    """Return the ``(R, R)`` float64 0/1 contact matrix of residues within ``cutoff`` Å.

    Parameters
    ----------
    xyz : np.ndarray
        ``(R, 3)`` representative residue coordinates in Å.
    """
    n = len(xyz)
    w = np.zeros((n, n), dtype=np.float64)
    if n < 2:
        return w
    pairs = cKDTree(xyz).query_pairs(cutoff, output_type="ndarray")
    w[pairs[:, 0], pairs[:, 1]] = 1.0
    w[pairs[:, 1], pairs[:, 0]] = 1.0
    return w


def score_bisections(w: np.ndarray, min_size: int, min_segment: int) -> np.ndarray:
    """Normalised cut of every split of ``R`` ordered residues into a segment and the rest.

    Part A is the segment ``[i, j)`` of the given order, part B the rest (one or two segments),
    so every one-cut and two-cut partition is scored at once from 2-D prefix sums of ``w``.

    Parameters
    ----------
    w : np.ndarray
        ``(R, R)`` symmetric non-negative affinity (contact) matrix.
    min_size : int
        Smallest part, in residues; smaller splits score ``inf``.
    min_segment : int
        Smallest piece of B left at either end, in residues (unless empty).

    Returns
    -------
    np.ndarray
        ``(R + 1, R + 1)`` normalised cut ``cut/vol(A) + cut/vol(B)`` at ``[i, j]``; ``inf``
        where ``j <= i`` or the split breaks a size limit.
    """
    n = len(w)
    p = np.zeros((n + 1, n + 1))
    p[1:, 1:] = w.cumsum(0).cumsum(1)
    i = np.arange(n + 1)[:, None]
    j = np.arange(n + 1)[None, :]

    def block(r0, r1, c0, c1):
        return p[r1, c1] - p[r0, c1] - p[r1, c0] + p[r0, c0]

    intra_a = block(i, j, i, j)
    cut = block(i, j, 0, i) + block(i, j, j, n)
    intra_b = p[n, n] - intra_a - 2 * cut
    size_a = j - i
    ok = (size_a >= min_size) & (n - size_a >= min_size)
    ok &= ((i == 0) | (i >= min_segment)) & ((j == n) | (n - j >= min_segment))
    with np.errstate(divide="ignore", invalid="ignore"):
        ncut = cut / (intra_a + cut) + cut / (intra_b + cut)
    ncut = np.where(ok & np.isfinite(ncut), ncut, np.inf)
    return ncut


def best_bisection(w: np.ndarray, min_size: int, min_segment: int
                   ) -> tuple[float, np.ndarray | None]:
    """Return ``(ncut, mask)`` of the lowest-cut split (see :func:`score_bisections`).

    ``mask`` is ``(R,)`` bool, True in part A; ``None`` when no split meets the size limits.
    """
    n = len(w)
    if n < 2 * min_size:
        return np.inf, None
    ncut = score_bisections(w, min_size, min_segment)
    i, j = np.unravel_index(int(np.argmin(ncut)), ncut.shape)
    if not np.isfinite(ncut[i, j]):
        return np.inf, None
    mask = np.zeros(n, dtype=bool)
    mask[i:j] = True
    return float(ncut[i, j]), mask


def bisect_recursively(w: np.ndarray, xyz: np.ndarray, min_size: int, max_size: int,
                       min_segment: int, ncut_max: float,
                       compact_max: float | None = None) -> np.ndarray:
    """Label residues by recursive bisection of the contact graph ``w`` (``(R, R)``).

    A part is split when its best normalised cut is below ``ncut_max / 4``, or below
    ``ncut_max`` with both halves compact (:func:`compactness` at most ``compact_max``, default
    :data:`DEFAULT_COMPACT_MAX`), or, whatever the cut, when it holds more than ``max_size``
    residues. So a rod (a coiled coil, a row of repeats) is cut only where it barely touches.

    Parameters
    ----------
    w : np.ndarray
        ``(R, R)`` contact matrix.
    xyz : np.ndarray
        ``(R, 3)`` residue coordinates in Å, for the compactness test.

    Returns
    -------
    np.ndarray
        ``(R,)`` int64 labels ``0 .. k-1``.
    """
    compact_max = DEFAULT_COMPACT_MAX if compact_max is None else compact_max
    labels = np.zeros(len(w), dtype=np.int64)
    stack = [np.arange(len(w))]
    next_label = 1
    while stack:
        idx = stack.pop()
        score, mask = best_bisection(w[np.ix_(idx, idx)], min_size, min_segment)
        if mask is None:
            continue
        compact = max(compactness(xyz[idx[mask]]), compactness(xyz[idx[~mask]])) <= compact_max
        if not (len(idx) > max_size or score < ncut_max / 4 or (score < ncut_max and compact)):
            continue
        labels[idx[mask]] = next_label
        next_label += 1
        stack += [idx[mask], idx[~mask]]
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)
