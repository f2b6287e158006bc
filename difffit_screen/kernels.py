"""Fused CPU kernel of the search: trilinear value-gradient sampling and rigid-body reduction.

One pass over every placement's atoms does what :func:`difffit_screen.optimise._analytic_step`
does with three torch operations (a batched matrix product for the posed coordinates, a
4-channel ``grid_sample`` and the force/torque reductions): it poses the atom, reads the 4
channels of the 8 surrounding voxels (the same trilinear interpolation as
``grid_sample(..., align_corners=True, padding_mode="border")``), and accumulates the loss
``-sum_i m_i v_i``, the force ``sum_i m_i g_i`` and the moment ``sum_i m_i g_i x_i^T`` in
float64, without writing the ``(4, K, N)`` samples or the ``(K, N, 3)`` posed coordinates
to memory. Compiled by numba (``nogil``; cached on disk after the first
run); placements are split into chunks run on a thread pool of ``torch.get_num_threads()``
threads, so concurrent callers (the search and the previous batch's refinement) are safe.

Conventions: coordinates ``[x, y, z]`` in Å; the volume is ``(nz, ny, nx, 4)`` float32,
channels ``[value, d/dx, d/dy, d/dz]`` (per Å); a placement ``k`` puts centred atom ``x_i`` of
candidate ``owner[k]`` at ``rot[k] @ x_i + trans[k]``.
"""

from __future__ import annotations

import functools
import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["rigid_body_gradients"]

@functools.cache
def _kernel():
    """The per-range kernel, compiled (or loaded from numba's disk cache) on first use."""
    from numba import njit

    @njit(nogil=True, cache=True, fastmath=False)
    def kernel(vol, x, owner, m, rot, trans, origin, inv_voxel, lo, hi, loss, grad_t, grad_w):
        nz, ny, nx = vol.shape[0], vol.shape[1], vol.shape[2]
        n_atoms = x.shape[1]
        for k in range(lo, hi):
            b = owner[k]
            r = rot[k]
            v = 0.0
            f0 = 0.0
            f1 = 0.0
            f2 = 0.0
            g = np.zeros((3, 3))  # sum_i m_i g_i x_i^T
            for i in range(n_atoms):
                w = m[b, i]
                if w == 0.0:
                    continue
                x0, x1, x2 = x[b, i, 0], x[b, i, 1], x[b, i, 2]
                ux = ((r[0, 0] * x0 + r[0, 1] * x1 + r[0, 2] * x2 + trans[k, 0]) - origin[0]) \
                    * inv_voxel[0]
                uy = ((r[1, 0] * x0 + r[1, 1] * x1 + r[1, 2] * x2 + trans[k, 1]) - origin[1]) \
                    * inv_voxel[1]
                uz = ((r[2, 0] * x0 + r[2, 1] * x1 + r[2, 2] * x2 + trans[k, 2]) - origin[2]) \
                    * inv_voxel[2]
                ux = min(max(ux, 0.0), nx - 1.0)  # "border" padding
                uy = min(max(uy, 0.0), ny - 1.0)
                uz = min(max(uz, 0.0), nz - 1.0)
                ix = min(int(ux), nx - 2)
                iy = min(int(uy), ny - 2)
                iz = min(int(uz), nz - 2)
                ax, ay, az = ux - ix, uy - iy, uz - iz
                sv = 0.0
                s0 = 0.0
                s1 = 0.0
                s2 = 0.0
                for dz in range(2):
                    wz = az if dz else 1.0 - az
                    for dy in range(2):
                        wyz = wz * (ay if dy else 1.0 - ay)
                        for dx in range(2):
                            c = wyz * (ax if dx else 1.0 - ax)
                            sv += c * vol[iz + dz, iy + dy, ix + dx, 0]
                            s0 += c * vol[iz + dz, iy + dy, ix + dx, 1]
                            s1 += c * vol[iz + dz, iy + dy, ix + dx, 2]
                            s2 += c * vol[iz + dz, iy + dy, ix + dx, 3]
                v += w * sv
                s0 *= w
                s1 *= w
                s2 *= w
                f0 += s0
                f1 += s1
                f2 += s2
                g[0, 0] += s0 * x0
                g[0, 1] += s0 * x1
                g[0, 2] += s0 * x2
                g[1, 0] += s1 * x0
                g[1, 1] += s1 * x1
                g[1, 2] += s1 * x2
                g[2, 0] += s2 * x0
                g[2, 1] += s2 * x1
                g[2, 2] += s2 * x2
            loss[k] = -v
            grad_t[k, 0] = -f0
            grad_t[k, 1] = -f1
            grad_t[k, 2] = -f2
            # torque = sum_i (R x_i) x g_i from the antisymmetric part of G R^T
            gm = np.zeros((3, 3))
            for a in range(3):
                for c in range(3):
                    gm[a, c] = g[a, 0] * r[c, 0] + g[a, 1] * r[c, 1] + g[a, 2] * r[c, 2]
            grad_w[k, 0] = -(gm[2, 1] - gm[1, 2])
            grad_w[k, 1] = -(gm[0, 2] - gm[2, 0])
            grad_w[k, 2] = -(gm[1, 0] - gm[0, 1])

    return kernel


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    """One thread pool per thread count, shared by every caller (the search and the previous
    batch's refinement submit to the same pool)."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="difffit-kernel")


def rigid_body_gradients(volume: np.ndarray, x: np.ndarray, owner: np.ndarray,
                         m: np.ndarray, rot: np.ndarray, trans: np.ndarray,
                         origin: np.ndarray, voxel: np.ndarray,
                         threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minus the weighted mean density of each placement and its gradients w.r.t. the pose.

    Parameters
    ----------
    volume : np.ndarray
        ``(nz, ny, nx, 4)`` float32, C-contiguous: value and ``[d/dx, d/dy, d/dz]`` per Å.
    x : np.ndarray
        ``(B, N, 3)`` float32 centred coordinates of the candidates (zero-padded).
    owner : np.ndarray
        ``(K,)`` int64, the candidate of each placement.
    m : np.ndarray
        ``(B, N)`` float32 atom weights (each candidate's sum to 1; 0 for padding).
    rot, trans : np.ndarray
        ``(K, 3, 3)`` and ``(K, 3)`` float32 poses.
    origin, voxel : np.ndarray
        ``(3,)`` float32 grid origin and voxel size, ``[x, y, z]`` Å.
    threads : int
        Threads to split the placements over.

    Returns
    -------
    loss : np.ndarray
        ``(K,)`` float32, minus the weighted mean density at the posed atoms.
    grad_t, grad_w : np.ndarray
        ``(K, 3)`` float32: minus the mean force, and minus the mean torque about the
        candidate's centroid (the gradient w.r.t. a left rotation increment).
    """
    kernel = _kernel()
    k = len(rot)
    loss = np.empty(k, np.float32)
    grad_t = np.empty((k, 3), np.float32)
    grad_w = np.empty((k, 3), np.float32)
    inv_voxel = (1.0 / np.asarray(voxel, np.float64)).astype(np.float32)
    args = (volume, x, owner, m, rot, trans, np.asarray(origin, np.float32), inv_voxel)
    n_chunks = min(k, 4 * threads) if threads > 1 else 1
    bounds = np.linspace(0, k, n_chunks + 1).astype(int)
    if n_chunks <= 1:
        kernel(*args, 0, k, loss, grad_t, grad_w)
    else:
        jobs = [_pool(threads).submit(kernel, *args, int(lo), int(hi), loss,
                                      grad_t, grad_w)
                for lo, hi in itertools.pairwise(bounds) if hi > lo]
        for job in jobs:
            job.result()
    return loss, grad_t, grad_w
