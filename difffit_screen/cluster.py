"""Clustering of fitted poses at a shift / angle tolerance (default 3 Å / 6°, as ChimeraX fitmap).

Score-ordered leader clustering: the best remaining pose becomes a cluster representative and
takes every remaining pose whose centroid lies within ``shift`` Å and whose rotation differs by
less than ``angle`` degrees. Distances from a leader to all remaining poses are computed at once
(numpy), so the only loop is over clusters, never over pairs. The result does not depend on the
input order, only on the scores (ties broken by index).
"""

from __future__ import annotations

import numpy as np


def rotation_angles(rot_a: np.ndarray, rot_b: np.ndarray) -> np.ndarray:
    """Angles in degrees between ``(3, 3)`` ``rot_a`` and each of ``(K, 3, 3)`` ``rot_b``."""
    cos = (np.einsum("ij,kij->k", rot_a, rot_b) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def cluster_poses(
    rot: np.ndarray,
    centroid: np.ndarray,
    score: np.ndarray,
    shift: float = 3.0,
    angle: float = 6.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster poses; higher ``score`` is better.

    Parameters
    ----------
    rot : np.ndarray
        ``(K, 3, 3)`` rotations.
    centroid : np.ndarray
        ``(K, 3)`` fitted centroid positions, Å.
    score : np.ndarray
        ``(K,)`` pose scores (higher is better).
    shift, angle : float
        Tolerances in Å and degrees.

    Returns
    -------
    labels : np.ndarray
        ``(K,)`` cluster index of each pose; clusters are numbered best first.
    leaders : np.ndarray
        ``(C,)`` index of each cluster's representative (its best pose).
    """
    k = len(score)
    order = np.lexsort((np.arange(k), -np.asarray(score, dtype=np.float64)))
    labels = np.full(k, -1, dtype=np.int64)
    leaders: list[int] = []
    remaining = order
    while remaining.size:
        lead = int(remaining[0])
        near = np.linalg.norm(centroid[remaining] - centroid[lead], axis=1) <= shift
        cand = remaining[near]
        close = cand[rotation_angles(rot[lead], rot[cand]) < angle]
        labels[close] = len(leaders)
        labels[lead] = len(leaders)
        leaders.append(lead)
        remaining = remaining[labels[remaining] < 0]
    return labels, np.asarray(leaders, dtype=np.int64)
