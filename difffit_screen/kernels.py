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

__all__ = ["dilate_mask", "optimise_rigid_bodies", "rigid_body_gradients"]

@functools.cache
def _compiled():
    """The compiled kernels (or numba's disk cache of them), on first use:
    ``(gradients, optimise)`` range functions."""
    from numba import njit

    @njit(nogil=True, cache=True, fastmath=True, inline="always")
    def placement(vol, x, m, b, r, c, inv_voxel):
        """Loss, force and ``G = sum_i m_i g_i x_i^T`` of one placement: atom ``i`` of
        candidate ``b`` at voxel coordinates ``A x_i + c`` (``r`` = ``A``, the rotation with
        the inverse voxel size folded into its rows)."""
        nz, ny, nx = vol.shape[0], vol.shape[1], vol.shape[2]
        xm, ym, zm = np.float32(nx - 1.0), np.float32(ny - 1.0), np.float32(nz - 1.0)
        zero, one = np.float32(0.0), np.float32(1.0)
        v = 0.0
        f0 = 0.0
        f1 = 0.0
        f2 = 0.0
        g00 = 0.0
        g01 = 0.0
        g02 = 0.0
        g10 = 0.0
        g11 = 0.0
        g12 = 0.0
        g20 = 0.0
        g21 = 0.0
        g22 = 0.0
        for i in range(x.shape[1]):
            w = m[b, i]
            if w == 0.0:
                continue
            x0, x1, x2 = x[b, i, 0], x[b, i, 1], x[b, i, 2]
            ux = min(max(r[0] * x0 + r[1] * x1 + r[2] * x2 + c[0], zero), xm)  # "border"
            uy = min(max(r[3] * x0 + r[4] * x1 + r[5] * x2 + c[1], zero), ym)
            uz = min(max(r[6] * x0 + r[7] * x1 + r[8] * x2 + c[2], zero), zm)
            ix = min(int(ux), nx - 2)
            iy = min(int(uy), ny - 2)
            iz = min(int(uz), nz - 2)
            ax, ay, az = ux - ix, uy - iy, uz - iz
            bx, by, bz = one - ax, one - ay, one - az
            sv = zero
            s0 = zero
            s1 = zero
            s2 = zero
            for dz in range(2):
                wz = az if dz else bz
                for dy in range(2):
                    wyz = wz * (ay if dy else by)
                    row = vol[iz + dz, iy + dy]
                    cc = wyz * bx
                    sv += cc * row[ix, 0]
                    s0 += cc * row[ix, 1]
                    s1 += cc * row[ix, 2]
                    s2 += cc * row[ix, 3]
                    cc = wyz * ax
                    sv += cc * row[ix + 1, 0]
                    s0 += cc * row[ix + 1, 1]
                    s1 += cc * row[ix + 1, 2]
                    s2 += cc * row[ix + 1, 3]
            ww = np.float64(w)
            v += ww * sv
            d0, d1, d2 = ww * s0, ww * s1, ww * s2
            f0 += d0
            f1 += d1
            f2 += d2
            g00 += d0 * x0
            g01 += d0 * x1
            g02 += d0 * x2
            g10 += d1 * x0
            g11 += d1 * x1
            g12 += d1 * x2
            g20 += d2 * x0
            g21 += d2 * x1
            g22 += d2 * x2
        return v, f0, f1, f2, g00, g01, g02, g10, g11, g12, g20, g21, g22

    @njit(nogil=True, cache=True, fastmath=True, inline="always")
    def evaluate(vol, x, m, b, rot, t, origin, inv_voxel, a, c, out):
        """``out[:7]`` = loss, minus force, minus torque of pose ``rot`` (3, 3), ``t`` (3,)."""
        for p in range(3):
            for q in range(3):
                a[3 * p + q] = rot[p, q] * inv_voxel[p]
            c[p] = (t[p] - origin[p]) * inv_voxel[p]
        v, f0, f1, f2, g00, g01, g02, g10, g11, g12, g20, g21, g22 = placement(
            vol, x, m, b, a, c, inv_voxel)
        # torque sum_i (R x_i) x g_i from the antisymmetric part of G R^T
        gm21 = g20 * rot[1, 0] + g21 * rot[1, 1] + g22 * rot[1, 2]
        gm12 = g10 * rot[2, 0] + g11 * rot[2, 1] + g12 * rot[2, 2]
        gm02 = g00 * rot[2, 0] + g01 * rot[2, 1] + g02 * rot[2, 2]
        gm20 = g20 * rot[0, 0] + g21 * rot[0, 1] + g22 * rot[0, 2]
        gm10 = g10 * rot[0, 0] + g11 * rot[0, 1] + g12 * rot[0, 2]
        gm01 = g00 * rot[1, 0] + g01 * rot[1, 1] + g02 * rot[1, 2]
        out[0] = -v
        out[1] = -f0
        out[2] = -f1
        out[3] = -f2
        out[4] = -(gm21 - gm12)
        out[5] = -(gm02 - gm20)
        out[6] = -(gm10 - gm01)

    @njit(nogil=True, cache=True, fastmath=True)
    def gradients(vol, x, owner, m, rot, trans, origin, inv_voxel, lo, hi, loss, grad_t,
                  grad_w):
        a = np.empty(9, np.float32)
        c = np.empty(3, np.float32)
        out = np.empty(7)
        for k in range(lo, hi):
            evaluate(vol, x, m, owner[k], rot[k], trans[k], origin, inv_voxel, a, c, out)
            loss[k] = out[0]
            for j in range(3):
                grad_t[k, j] = out[1 + j]
                grad_w[k, j] = out[4 + j]

    @njit(nogil=True, cache=True, fastmath=True)
    def optimise(vol, x, owner, m, rot, trans, origin, inv_voxel, lr_trans, lr_rot, fracs,
                 lo, hi, loss):
        """Adam on (translation, left rotation increment) of placements ``lo:hi``, in place;
        ``fracs`` ``(iterations,)`` is the step-size schedule."""
        b1, b2, eps = 0.9, 0.999, 1e-8
        a = np.empty(9, np.float32)
        c = np.empty(3, np.float32)
        out = np.empty(7)
        r = np.empty((3, 3))
        rk = np.empty((3, 3))
        rn = np.empty((3, 3))
        t = np.empty(3)
        mom = np.empty(12)  # m_t, v_t, m_w, v_w
        for k in range(lo, hi):
            b = owner[k]
            for p in range(3):
                t[p] = trans[k, p]
                for q in range(3):
                    r[p, q] = rot[k, p, q]
            mom[:] = 0.0
            c1 = 1.0
            c2 = 1.0
            for it in range(fracs.shape[0]):
                evaluate(vol, x, m, b, r, t, origin, inv_voxel, a, c, out)
                c1 *= b1
                c2 *= b2
                w0 = 0.0
                w1 = 0.0
                w2 = 0.0
                for j in range(3):
                    gt, gw = out[1 + j], out[4 + j]
                    mom[j] = b1 * mom[j] + (1 - b1) * gt
                    mom[3 + j] = b2 * mom[3 + j] + (1 - b2) * gt * gt
                    mom[6 + j] = b1 * mom[6 + j] + (1 - b1) * gw
                    mom[9 + j] = b2 * mom[9 + j] + (1 - b2) * gw * gw
                    t[j] -= (lr_trans * fracs[it] / (1 - c1)) * mom[j] / (
                        np.sqrt(mom[3 + j] / (1 - c2)) + eps)
                    step = -(fracs[it] / (1 - c1)) * lr_rot[k] * mom[6 + j] / (
                        np.sqrt(mom[9 + j] / (1 - c2)) + eps)
                    if j == 0:
                        w0 = step
                    elif j == 1:
                        w1 = step
                    else:
                        w2 = step
                # r <- exp([w]x) r (Rodrigues)
                th2 = w0 * w0 + w1 * w1 + w2 * w2
                if th2 < 1e-8:
                    sa = 1.0 - th2 / 6.0
                    sb = 0.5 - th2 / 24.0
                else:
                    th = np.sqrt(th2)
                    sa = np.sin(th) / th
                    sb = (1.0 - np.cos(th)) / th2
                rk[0, 0] = 1.0 - sb * (w1 * w1 + w2 * w2)
                rk[0, 1] = -sa * w2 + sb * w0 * w1
                rk[0, 2] = sa * w1 + sb * w0 * w2
                rk[1, 0] = sa * w2 + sb * w0 * w1
                rk[1, 1] = 1.0 - sb * (w0 * w0 + w2 * w2)
                rk[1, 2] = -sa * w0 + sb * w1 * w2
                rk[2, 0] = -sa * w1 + sb * w0 * w2
                rk[2, 1] = sa * w0 + sb * w1 * w2
                rk[2, 2] = 1.0 - sb * (w0 * w0 + w1 * w1)
                for p in range(3):
                    for q in range(3):
                        rn[p, q] = rk[p, 0] * r[0, q] + rk[p, 1] * r[1, q] + rk[p, 2] * r[2, q]
                r[:] = rn
            evaluate(vol, x, m, b, r, t, origin, inv_voxel, a, c, out)
            loss[k] = out[0]
            for p in range(3):
                trans[k, p] = t[p]
                for q in range(3):
                    rot[k, p, q] = r[p, q]

    return gradients, optimise


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    """One thread pool per thread count, shared by every caller (the search and the previous
    batch's refinement submit to the same pool)."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="difffit-kernel")


def _run_chunks(fn, k: int, threads: int, head: tuple, tail: tuple) -> None:
    """``fn(*head, lo, hi, *tail)`` over ``threads``-way chunks ``lo:hi`` of ``range(k)`` on
    the thread pool (each placement's numbers do not depend on the chunks)."""
    n_chunks = min(k, 4 * threads) if threads > 1 else 1
    bounds = np.linspace(0, k, n_chunks + 1).astype(int)
    if n_chunks <= 1:
        fn(*head, 0, k, *tail)
        return
    jobs = [_pool(threads).submit(fn, *head, int(lo), int(hi), *tail)
            for lo, hi in itertools.pairwise(bounds) if hi > lo]
    for job in jobs:
        job.result()


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
    k = len(rot)
    rot = np.array(rot, dtype=np.float64)
    trans = np.array(trans, dtype=np.float64)
    loss = np.empty(k)
    inv_voxel = (1.0 / np.asarray(voxel, np.float64)).astype(np.float32)
    _run_chunks(_compiled()[1], k, threads,
                (volume, x, owner, m, rot, trans, np.asarray(origin, np.float32), inv_voxel,
                 float(lr_trans), np.ascontiguousarray(lr_rot, np.float64),
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
    k = len(rot)
    loss = np.empty(k, np.float32)
    grad_t = np.empty((k, 3), np.float32)
    grad_w = np.empty((k, 3), np.float32)
    inv_voxel = (1.0 / np.asarray(voxel, np.float64)).astype(np.float32)
    _run_chunks(_compiled()[0], k, threads,
                (volume, x, owner, m, rot, trans, np.asarray(origin, np.float32), inv_voxel),
                (loss, grad_t, grad_w))
    return loss, grad_t, grad_w


@functools.cache
def _dilate_kernel():
    """The dilation kernel, compiled (or loaded from numba's disk cache) on first use."""
    from numba import njit

    @njit(nogil=True, cache=True)
    def kernel(mask, offsets, out):
        nz, ny, nx = mask.shape
        for z in range(nz):
            for y in range(ny):
                for x in range(nx):
                    if not mask[z, y, x]:
                        continue
                    out[z, y, x] = True
                    edge = ((z > 0 and not mask[z - 1, y, x])
                            or (z < nz - 1 and not mask[z + 1, y, x])
                            or (y > 0 and not mask[z, y - 1, x])
                            or (y < ny - 1 and not mask[z, y + 1, x])
                            or (x > 0 and not mask[z, y, x - 1])
                            or (x < nx - 1 and not mask[z, y, x + 1]))
                    if not edge:
                        continue
                    for j in range(offsets.shape[0]):
                        qz = z + offsets[j, 0]
                        qy = y + offsets[j, 1]
                        qx = x + offsets[j, 2]
                        if 0 <= qz < nz and 0 <= qy < ny and 0 <= qx < nx:
                            out[qz, qy, qx] = True

    return kernel


def dilate_mask(mask: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """Binary dilation of ``mask`` ``(nz, ny, nx)`` by ``ball`` (odd-sized, centred, boolean),
    within ``mask``'s grid.

    Only the mask's edge voxels (those with a 6-neighbour in the grid outside the mask) stamp
    the ball: a voxel ``p`` within the ball of a mask voxel ``s`` is also within the ball of
    an edge voxel, because a lattice path from ``s`` to ``p`` that moves one axis step at a time
    towards ``p`` only shortens the offset, stays in the grid, and leaves the mask at an edge
    voxel. So the result is exactly the dilation, at the cost of the mask's surface.
    """
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    offsets = np.argwhere(ball) - (np.array(ball.shape) - 1) // 2  # (M, 3) [dz, dy, dx]
    out = np.zeros(mask.shape, dtype=np.bool_)
    _dilate_kernel()(mask, offsets.astype(np.int64), out)
    return out
