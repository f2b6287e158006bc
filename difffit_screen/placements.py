"""Start placements of the search: positions spread over the density and rotations uniform on SO(3).

Every random choice is drawn from ``numpy.random.default_rng(seed)``; the seed is recorded in the
outputs. Rotations are returned as ``(n, 3, 3)`` matrices acting on column vectors
(``x' = R @ x``); positions as ``(n, 3)`` world ``[x, y, z]`` in Å.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

_PHI = np.sqrt(2.0)
_PSI = 1.533751168755204288118041


def super_fibonacci_quaternions(n: int) -> np.ndarray:
    """Return ``(n, 4)`` unit quaternions ``xyzw`` spread uniformly over SO(3).

    Super-Fibonacci spirals (Alexa, CVPR 2022): a deterministic, low-discrepancy sampling of the
    unit 3-sphere, far more even than independent random draws for small ``n``.
    """
    s = np.arange(n, dtype=np.float64) + 0.5
    r = np.sqrt(s / n)
    big_r = np.sqrt(1.0 - s / n)
    alpha = 2.0 * np.pi * s / _PHI
    beta = 2.0 * np.pi * s / _PSI
    q = np.stack([r * np.sin(alpha), r * np.cos(alpha), big_r * np.sin(beta),
                  big_r * np.cos(beta)], axis=1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def sample_rotations(n: int, seed: int) -> np.ndarray:
    """Return ``(n, 3, 3)`` rotation matrices uniform on SO(3).

    A super-Fibonacci set turned by one random rotation drawn from ``seed``, so that runs with
    different seeds cover SO(3) with different but equally even sets.
    """
    rng = np.random.default_rng(seed)
    offset = Rotation.random(random_state=rng)
    return (offset * Rotation.from_quat(super_fibonacci_quaternions(n))).as_matrix()


def sample_positions(
    mask: np.ndarray,
    origin: np.ndarray,
    voxel_size: np.ndarray,
    n: int,
    seed: int,
    jitter: bool = True,
    corner: np.ndarray | None = None,
) -> np.ndarray:
    """Return ``(n, 3)`` start positions ``[x, y, z]`` (Å) spread over the footprint voxels.

    Farthest-point sampling over the voxels of ``mask`` (``[z, y, x]`` bool), starting from a
    voxel drawn from ``seed``, gives positions that cover the whole density evenly (random
    draws cluster where the density is largest). Positions get a sub-voxel jitter. If the
    footprint has fewer than ``n`` voxels, voxels are reused (with different jitters).
    ``corner`` (``[k, j, i]``, default zero) is the grid index of ``mask[0, 0, 0]`` when
    ``mask`` is a crop of the map's grid (whose voxel ``[0, 0, 0]`` lies at ``origin``): a
    crop to the footprint's bounding box gives the same positions as the whole mask.
    """
    rng = np.random.default_rng(seed)
    idx = np.argwhere(mask)  # (m, 3) [k, j, i]
    if corner is not None:
        idx = idx + np.asarray(corner, dtype=idx.dtype)
    if len(idx) == 0:
        raise ValueError("empty footprint: no start positions")
    pts = origin + idx[:, ::-1] * voxel_size  # (m, 3) xyz
    if len(pts) > 20000:  # subsample for speed; FPS on 20k points is cheap and still even
        pts = pts[rng.choice(len(pts), 20000, replace=False)]
    chosen = np.empty(min(n, len(pts)), dtype=np.int64)
    chosen[0] = rng.integers(len(pts))
    dist = np.linalg.norm(pts - pts[chosen[0]], axis=1)
    for k in range(1, len(chosen)):
        chosen[k] = int(np.argmax(dist))
        dist = np.minimum(dist, np.linalg.norm(pts - pts[chosen[k]], axis=1))
    out = pts[chosen]
    if len(out) < n:
        out = out[rng.integers(len(out), size=n)]
    if jitter:
        out = out + rng.uniform(-0.5, 0.5, size=out.shape) * voxel_size
    return out
