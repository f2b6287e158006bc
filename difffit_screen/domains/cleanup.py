"""Clean-up of domain labels: short runs absorbed, small domains merged, large ones bisected,
labels numbered in sequence order.

Labels are ``(R,)`` int64 arrays over residues in sequence order, -1 for residues left out.
"""

from __future__ import annotations

import numpy as np

from .bisection import bisect_recursively

__all__ = ["absorb_short_segments", "affinity_to_labels", "count_pieces", "label_runs",
           "merge_small_domains", "order_labels", "relabel", "split_large_domains"]


def label_runs(labels: np.ndarray, breaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of runs of equal labels, also cut at chain ``breaks``.

    Parameters
    ----------
    labels : np.ndarray
        ``(R,)`` labels in sequence order.
    breaks : np.ndarray
        ``(R,)`` bool, True where a new chain starts.
    """
    new = np.ones(len(labels), dtype=bool)
    new[1:] = (labels[1:] != labels[:-1]) | breaks[1:]
    starts = np.flatnonzero(new)
    return starts, np.r_[starts[1:], len(labels)]


def affinity_to_labels(w: np.ndarray, sel: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Total affinity ``w`` from residues ``sel`` to each label: ``(k,)``, ``k = max(labels)+1``."""
    k = int(labels.max()) + 1
    return np.bincount(labels, weights=w[sel].sum(0), minlength=k)


def absorb_short_segments(labels: np.ndarray, w: np.ndarray, breaks: np.ndarray,
                          min_segment: int) -> np.ndarray:
    """Give each run shorter than ``min_segment`` to the domain it has most affinity with.

    A run is a stretch of one label between label changes and ``breaks`` (chain starts, gaps
    left by trimming or missing residues). Its affinity to each label is the summed ``w`` to
    that label's other residues; a run with no affinity to anything is dropped (label -1).
    Repeated until nothing changes.

    Parameters
    ----------
    labels : np.ndarray
        ``(R,)`` labels, -1 for residues left out.
    w : np.ndarray
        ``(R, R)`` affinity (contacts or PAE-graph weights).
    breaks : np.ndarray
        ``(R,)`` bool, True where a new piece of chain starts.
    """
    labels = labels.copy()
    for _ in range(10):
        changed = False
        starts, ends = label_runs(labels, breaks)
        for r in np.argsort(ends - starts, kind="stable"):
            s, e = starts[r], ends[r]
            if e - s >= min_segment or labels[s] < 0:
                continue
            valid = labels >= 0
            valid[s:e] = False
            aff = np.bincount(labels[valid], weights=w[s:e][:, valid].sum(0),
                              minlength=int(labels.max()) + 1)
            new = int(np.argmax(aff)) if aff.size and aff.max() > 0 else -1
            if new != labels[s]:
                labels[s:e] = new
                changed = True
        if not changed:
            break
    return relabel(labels)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Renumber labels ``0 .. k-1`` keeping their order; -1 stays -1."""
    out = np.full(len(labels), -1, dtype=np.int64)
    valid = labels >= 0
    out[valid] = np.unique(labels[valid], return_inverse=True)[1]
    return out


def count_pieces(labels: np.ndarray, d: int) -> int:
    """Number of separate stretches of label ``d`` in ``labels`` once left-out (-1) residues
    are skipped: 1 for a continuous domain, 2 for the GroEL equatorial domain."""
    seq = labels[labels >= 0] == d
    return int(seq[0]) + int(np.count_nonzero(seq[1:] & ~seq[:-1])) if seq.size else 0


def merge_small_domains(labels: np.ndarray, w: np.ndarray, min_size: int) -> np.ndarray:
    """Merge domains below ``min_size`` residues into their best-connected domain, or drop them.

    Returns
    -------
    np.ndarray
        ``(R,)`` int64 labels ``0 .. k-1``, -1 for dropped residues.
    """
    labels = labels.copy()
    while True:
        valid = labels >= 0
        if not valid.any():
            return labels
        counts = np.bincount(labels[valid])
        small = [c for c in np.argsort(counts, kind="stable") if 0 < counts[c] < min_size]
        if not small:
            break
        c = small[0]
        sel = np.flatnonzero(labels == c)
        aff = np.bincount(labels[valid], weights=w[sel][:, valid].sum(0), minlength=len(counts))
        aff[c] = 0
        labels[sel] = int(np.argmax(aff)) if aff.max() > 0 and len(counts) > 1 else -1
    out = np.full_like(labels, -1)
    out[labels >= 0] = np.unique(labels[labels >= 0], return_inverse=True)[1]
    return out


def split_large_domains(labels: np.ndarray, w: np.ndarray, xyz: np.ndarray, max_size: int,
                        min_size: int, min_segment: int) -> np.ndarray:
    """Bisect domains above ``max_size`` residues at their best cut until none is left.

    ``w`` is the ``(R, R)`` contact matrix, ``xyz`` the ``(R, 3)`` residue coordinates.
    """
    labels = labels.copy()
    for c in range(int(labels.max()) + 1 if labels.size else 0):
        idx = np.flatnonzero(labels == c)
        if len(idx) <= max_size:
            continue
        sub = bisect_recursively(w[np.ix_(idx, idx)], xyz[idx], min(min_size, len(idx) // 2),
                                 max_size, min_segment, ncut_max=-np.inf)
        labels[idx[sub > 0]] = labels.max() + sub[sub > 0]
    return labels


def order_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber labels ``0 .. k-1`` by each label's first residue; -1 stays -1."""
    out = np.full_like(labels, -1)
    valid = labels >= 0
    if valid.any():
        _, first = np.unique(labels[valid], return_index=True)
        order = np.argsort(np.argsort(first))
        out[valid] = order[np.unique(labels[valid], return_inverse=True)[1]]
    return out
