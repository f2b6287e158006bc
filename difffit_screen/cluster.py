"""Clustering of fitted poses at a shift / angle tolerance (default 3 Å / 6°, as ChimeraX fitmap).

Score-ordered leader clustering: the best remaining pose becomes a cluster representative and
takes every remaining pose whose centroid lies within ``shift`` Å and whose rotation differs by
less than ``angle`` degrees. The loop over leaders and poses is compiled
(:func:`difffit_screen.compiled_kernels.leader_clusters`; a search of 640 starts that does not
converge leaves hundreds of clusters, and a numpy pass per cluster cost 50 ms a candidate). The
result does not depend on the input order, only on the scores (ties broken by index).
"""

from __future__ import annotations

import numpy as np


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
    from .compiled_kernels import leader_clusters

    k = len(score)
    order = np.lexsort((np.arange(k), -np.asarray(score, dtype=np.float64)))
    labels = np.full(k, -1, dtype=np.int64)
    leaders = np.empty(k, dtype=np.int64)
    n = leader_clusters(order, np.ascontiguousarray(rot, dtype=np.float64).reshape(k, 3, 3),
                        np.ascontiguousarray(centroid, dtype=np.float64).reshape(k, 3),
                        float(shift), float(angle), labels, leaders)
    return labels, leaders[:n].copy()
