"""Fused CPU kernels of the search and the scoring, compiled by numba.

- :func:`optimise_rigid_bodies`: the whole Adam search of every placement in compiled code
  (what :func:`difffit_screen.optimise.optimise_placements` does step by step on CUDA). Each
  step poses the placement's atoms, reads the 4 channels of the 8 voxels around each atom
  (the trilinear interpolation of ``grid_sample(..., align_corners=True,
  padding_mode="border")``), and accumulates the loss ``-sum_i m_i v_i``, the force
  ``sum_i m_i g_i`` and the moment ``sum_i m_i g_i x_i^T`` in float64, without writing
  samples or posed coordinates to memory; the Adam state is float64. A placement stays in
  one thread for all its iterations (its atoms' neighbourhood stays in cache), and no Python
  runs between steps. :func:`rigid_body_gradients` is one such step.
- :func:`dilate_mask` (the ``local_cc`` shell), :func:`splat_trilinear` and
  :func:`gaussian_blur` (simulated maps), :func:`correlation_sums` (the scores' sums over a
  simulated sub-box, without the masked copies).

The loops are in :mod:`difffit_screen.compiled_kernels` (numba is imported on first use and
the machine code is cached on disk). Placements are split into chunks run on one thread pool
per thread count (:func:`difffit_screen.devices.cpu_threads` by default); every placement's
numbers are the same whatever the chunks and threads.

Conventions: coordinates ``[x, y, z]`` in Å; the volume is ``(nz, ny, nx, 4)`` float32,
channels ``[value, d/dx, d/dy, d/dz]`` (per Å); a placement ``k`` puts centred atom ``x_i`` of
candidate ``owner[k]`` at ``rot[k] @ x_i + trans[k]``.
"""

from __future__ import annotations

import functools
import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["correlation_sums", "dilate_mask", "gaussian_blur", "optimise_rigid_bodies",
           "rigid_body_gradients", "splat_trilinear"]


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    """One thread pool per thread count, shared by every caller (the search, and the deeper
    searches that the scoring thread runs, submit to the same pool)."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="difffit-kernel")


def _run_chunks(fn, k: int, threads: int, head: tuple, tail: tuple) -> None:
    """``fn(*head, lo, hi, *tail)`` over ``threads``-way chunks ``lo:hi`` of ``range(k)`` on
    the thread pool (each placement's numbers do not depend on the chunks)."""
    n_chunks = min(k, 16 * threads) if threads > 1 else 1
    bounds = np.linspace(0, k, n_chunks + 1).astype(int)
    if n_chunks <= 1:
        fn(*head, 0, k, *tail)
        return
    jobs = [_pool(threads).submit(fn, *head, int(lo), int(hi), *tail)
            for lo, hi in itertools.pairwise(bounds) if hi > lo]
    for job in jobs:
        job.result()


def _by_axis(x: np.ndarray) -> np.ndarray:
    """``(B, N, 3)`` coordinates as the compiled loops read them: ``(B, 3, N)`` float32,
    C-contiguous (one row per axis)."""
    return np.ascontiguousarray(np.transpose(x, (0, 2, 1)), dtype=np.float32)


def optimise_rigid_bodies(volume: np.ndarray, x: np.ndarray, owner: np.ndarray,
                          m: np.ndarray, rot: np.ndarray, trans: np.ndarray,
                          origin: np.ndarray, voxel: np.ndarray, lr_trans: float,
                          lr_rot: np.ndarray, fracs: np.ndarray,
                          threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adam on every placement's pose, all iterations in compiled code, placements split
    over ``threads`` (what :func:`difffit_screen.optimise.optimise_placements` does step by
    step with :func:`rigid_body_gradients`).

    Parameters
    ----------
    volume, x, owner, m, origin, voxel
        As for :func:`rigid_body_gradients`.
    rot, trans : np.ndarray
        ``(K, 3, 3)`` and ``(K, 3)`` start poses (not modified).
    lr_trans : float
        Translation step, Å.
    lr_rot : np.ndarray
        ``(K,)`` rotation step of each placement, radians.
    fracs : np.ndarray
        ``(iterations,)`` step-size fraction of each iteration (the schedule).
    threads : int
        Threads to split the placements over.

    Returns
    -------
    rot, trans : np.ndarray
        ``(K, 3, 3)`` and ``(K, 3)`` float64 final poses.
    loss : np.ndarray
        ``(K,)`` float64 loss at the final poses.
    """
    from .compiled_kernels import optimise

    k = len(rot)
    rot = np.array(rot, dtype=np.float64)
    trans = np.array(trans, dtype=np.float64)
    loss = np.empty(k)
    inv_voxel = (1.0 / np.asarray(voxel, np.float64)).astype(np.float32)
    _run_chunks(optimise, k, threads,
                (volume, _by_axis(x), owner, m, rot, trans, np.asarray(origin, np.float32),
                 inv_voxel, float(lr_trans), np.ascontiguousarray(lr_rot, np.float64),
                 np.asarray(fracs, np.float64)), (loss,))
    return rot, trans, loss


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
    from .compiled_kernels import gradients

    k = len(rot)
    loss = np.empty(k, np.float32)
    grad_t = np.empty((k, 3), np.float32)
    grad_w = np.empty((k, 3), np.float32)
    inv_voxel = (1.0 / np.asarray(voxel, np.float64)).astype(np.float32)
    _run_chunks(gradients, k, threads,
                (volume, _by_axis(x), owner, m, rot, trans, np.asarray(origin, np.float32),
                 inv_voxel),
                (loss, grad_t, grad_w))
    return loss, grad_t, grad_w


def dilate_mask(mask: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """Binary dilation of ``mask`` ``(nz, ny, nx)`` by ``ball`` (odd-sized, centred, boolean),
    within ``mask``'s grid.

    Only the mask's edge voxels (those with a 6-neighbour in the grid outside the mask) stamp
    the ball: a voxel ``p`` within the ball of a mask voxel ``s`` is also within the ball of
    an edge voxel, because a lattice path from ``s`` to ``p`` that moves one axis step at a time
    towards ``p`` only shortens the offset, stays in the grid, and leaves the mask at an edge
    voxel. So the result is exactly the dilation, at the cost of the mask's surface.
    """
    from .compiled_kernels import dilate

    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    offsets = np.argwhere(ball) - (np.array(ball.shape) - 1) // 2  # (M, 3) [dz, dy, dx]
    out = np.zeros(mask.shape, dtype=np.bool_)
    dilate(mask, offsets.astype(np.int64), out)
    return out


def splat_trilinear(idx: np.ndarray, weights: np.ndarray, shape: tuple) -> np.ndarray:
    """Spread point ``weights`` ``(N,)`` over the 8 grid points around each fractional index.

    Parameters
    ----------
    idx : np.ndarray
        ``(N, 3)`` fractional indices in the grid's own axis order; every point needs its 8
        neighbours inside the grid (``0 <= idx < shape - 1``).
    weights : np.ndarray
        ``(N,)`` amplitudes.
    shape : tuple
        The grid's shape.

    Returns
    -------
    np.ndarray
        float64 grid of ``shape`` (the transpose of trilinear interpolation applied to
        ``weights``: each grid point gets ``sum_n w_n prod_axes (1 - |idx_n - point|)``).
    """
    from .compiled_kernels import splat

    idx = np.ascontiguousarray(idx, dtype=np.float64)
    if len(idx) and (idx.min() < 0 or np.any(idx.max(0) >= np.asarray(shape) - 1)):
        raise ValueError("splat_trilinear: points outside the grid")
    out = np.zeros(tuple(int(n) for n in shape))
    splat(idx, np.ascontiguousarray(weights, dtype=np.float64), out)
    return out


def gaussian_blur(volume: np.ndarray, sigma: np.ndarray, truncate: float = 3.0,
                  overwrite_input: bool = False) -> np.ndarray:
    """Gaussian smoothing of ``volume`` ``(nz, ny, nx)`` with ``sigma`` voxels per axis
    (``[z, y, x]``), zero beyond the grid: ``scipy.ndimage.gaussian_filter(volume, sigma,
    mode="constant", truncate=truncate)`` (the same taps, to float64 rounding), three passes
    of a compiled correlation instead of ndimage's line buffers. With ``overwrite_input`` a
    C-contiguous float64 ``volume`` serves as one of the two buffers the passes alternate
    between (no copy; its values are then lost): a fresh megabyte-sized array costs its page
    faults, as much as a pass.
    """
    from .compiled_kernels import correlate_axis

    if overwrite_input:
        data = np.ascontiguousarray(volume, dtype=np.float64)
    else:
        data = np.array(volume, dtype=np.float64, order="C")  # the passes swap buffers
    tmp = np.empty_like(data)
    for axis, s in enumerate(np.broadcast_to(np.asarray(sigma, dtype=np.float64), (3,))):
        if s <= 0:
            continue
        radius = int(truncate * float(s) + 0.5)  # as ndimage.gaussian_filter1d
        offsets = np.arange(-radius, radius + 1)
        taps = np.exp(-0.5 / (float(s) * float(s)) * offsets**2)
        correlate_axis(data, taps / taps.sum(), axis, tmp)
        data, tmp = tmp, data
    return data


def correlation_sums(sim: np.ndarray, env: np.ndarray, local: np.ndarray, data: np.ndarray,
                     mask: np.ndarray, corner: np.ndarray, level: float) -> np.ndarray:
    """Sums of the map/simulation correlations over a simulated sub-box, in one pass.

    Parameters
    ----------
    sim : np.ndarray
        ``(nz, ny, nx)`` simulated sub-box.
    env, local : np.ndarray
        ``(nz, ny, nx)`` boolean: the candidate's envelope and the shell around it.
    data, mask : np.ndarray
        The whole map ``(mz, my, mx)`` and its footprint (boolean), indexed ``[z, y, x]``.
    corner : np.ndarray
        ``[k, j, i]`` voxel of the map at the sub-box's first voxel (may be outside the map;
        the map is 0 and outside its footprint there).
    level : float
        The map is read clipped to ``[-level, level]`` (as float32, like
        :func:`difffit_screen.maps.clip_map`).

    Returns
    -------
    np.ndarray
        ``(3, 6)`` float64: rows the union of footprint and envelope, the footprint, the
        local shell; columns ``n, sum x, sum x^2, sum y, sum y^2, sum x y`` (x the clipped
        map, y ``sim``; the footprint row has no y).
    """
    from .compiled_kernels import correlation_sums as sums

    out = np.empty((3, 6))  # zeroed by the loop
    sums(np.ascontiguousarray(sim, dtype=np.float64), np.ascontiguousarray(env, dtype=np.bool_),
         np.ascontiguousarray(local, dtype=np.bool_), np.ascontiguousarray(data, np.float32),
         np.ascontiguousarray(mask, dtype=np.bool_), np.asarray(corner, dtype=np.int64),
         float(level), out)
    return out
