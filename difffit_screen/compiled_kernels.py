"""The numba-compiled loops behind :mod:`difffit_screen.kernels` (imported on first use, so
that importing the package does not import numba; top-level functions, so that numba's disk
cache keeps them between processes). See :mod:`difffit_screen.kernels` for the conventions.
"""

import numpy as np
from numba import njit


@njit(nogil=True, cache=True, fastmath=True, inline="always")
def placement(vol, x, m, b, r, c, with_value):
    """Loss, force and ``G = sum_i m_i g_i x_i^T`` of one placement: atom ``i`` of
    candidate ``b`` (``x[b, :, i]``) at voxel coordinates ``A x_i + c`` (``r`` = ``A``, the
    rotation with the inverse voxel size folded into its rows). ``with_value`` False skips
    the value channel (the loss is then 0): Adam's steps need only the gradient.

    The coordinates come as ``(B, 3, N)`` (one contiguous row per axis) and the volume is
    read through its flat view with unsigned offsets: numba then emits no negative-index
    wrap-around for the 24 reads of an atom, and the loop runs twice as fast as with signed
    ``vol[z, y, x, channel]`` indexing of ``(B, N, 3)`` coordinates (measured on the search).
    """
    nz, ny, nx = vol.shape[0], vol.shape[1], vol.shape[2]
    flat = vol.reshape(-1)
    sy = np.uint64(4 * nx)  # offsets of the next row and slice in the flat view
    sz = np.uint64(4 * nx * ny)
    xm, ym, zm = np.float32(nx - 1.0), np.float32(ny - 1.0), np.float32(nz - 1.0)
    zero, one = np.float32(0.0), np.float32(1.0)
    u1, u2, u3, u4 = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)
    u5, u6, u7 = np.uint64(5), np.uint64(6), np.uint64(7)
    r0, r1, r2, r3, r4, r5, r6, r7, r8 = r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]
    c0, c1, c2 = c[0], c[1], c[2]
    xs, ys, zs, ws = x[b, 0], x[b, 1], x[b, 2], m[b]
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
    for i in range(xs.shape[0]):
        w = ws[i]  # 0 for padding: its terms vanish (no branch: the loop stays straight)
        x0, x1, x2 = xs[i], ys[i], zs[i]
        ux = min(max(r0 * x0 + r1 * x1 + r2 * x2 + c0, zero), xm)  # "border"
        uy = min(max(r3 * x0 + r4 * x1 + r5 * x2 + c1, zero), ym)
        uz = min(max(r6 * x0 + r7 * x1 + r8 * x2 + c2, zero), zm)
        ix = min(int(ux), nx - 2)
        iy = min(int(uy), ny - 2)
        iz = min(int(uz), nz - 2)
        ax, ay, az = ux - ix, uy - iy, uz - iz
        bx, by, bz = one - ax, one - ay, one - az
        q00 = np.uint64(iz) * sz + np.uint64(iy) * sy + np.uint64(ix) * u4  # corner (0, 0)
        q01 = q00 + sy  # (z, y + 1)
        q10 = q00 + sz  # (z + 1, y)
        q11 = q10 + sy
        w00, w01, w10, w11 = bz * by, bz * ay, az * by, az * ay
        s0 = (w00 * (bx * flat[q00 + u1] + ax * flat[q00 + u5])
              + w01 * (bx * flat[q01 + u1] + ax * flat[q01 + u5])
              + w10 * (bx * flat[q10 + u1] + ax * flat[q10 + u5])
              + w11 * (bx * flat[q11 + u1] + ax * flat[q11 + u5]))
        s1 = (w00 * (bx * flat[q00 + u2] + ax * flat[q00 + u6])
              + w01 * (bx * flat[q01 + u2] + ax * flat[q01 + u6])
              + w10 * (bx * flat[q10 + u2] + ax * flat[q10 + u6])
              + w11 * (bx * flat[q11 + u2] + ax * flat[q11 + u6]))
        s2 = (w00 * (bx * flat[q00 + u3] + ax * flat[q00 + u7])
              + w01 * (bx * flat[q01 + u3] + ax * flat[q01 + u7])
              + w10 * (bx * flat[q10 + u3] + ax * flat[q10 + u7])
              + w11 * (bx * flat[q11 + u3] + ax * flat[q11 + u7]))
        ww = np.float64(w)
        if with_value:
            sv = (w00 * (bx * flat[q00] + ax * flat[q00 + u4])
                  + w01 * (bx * flat[q01] + ax * flat[q01 + u4])
                  + w10 * (bx * flat[q10] + ax * flat[q10 + u4])
                  + w11 * (bx * flat[q11] + ax * flat[q11 + u4]))
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
def evaluate(vol, x, m, b, rot, t, origin, inv_voxel, a, c, out, with_value):
    """``out[:7]`` = loss (0 without ``with_value``), minus force, minus torque of pose
    ``rot`` (3, 3), ``t`` (3,)."""
    for p in range(3):
        for q in range(3):
            a[3 * p + q] = rot[p, q] * inv_voxel[p]
        c[p] = (t[p] - origin[p]) * inv_voxel[p]
    v, f0, f1, f2, g00, g01, g02, g10, g11, g12, g20, g21, g22 = placement(
        vol, x, m, b, a, c, with_value)
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
        evaluate(vol, x, m, owner[k], rot[k], trans[k], origin, inv_voxel, a, c, out, True)
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
    w = np.empty(3)  # the rotation increment of a step
    mom = np.empty(12)  # m_t, v_t, m_w, v_w
    for k in range(lo, hi):
        b = owner[k]
        t[:] = trans[k]
        r[:] = rot[k]
        mom[:] = 0.0
        c1 = 1.0
        c2 = 1.0
        for it in range(fracs.shape[0]):
            evaluate(vol, x, m, b, r, t, origin, inv_voxel, a, c, out, False)
            c1 *= b1
            c2 *= b2
            for j in range(3):
                gt, gw = out[1 + j], out[4 + j]
                mom[j] = b1 * mom[j] + (1 - b1) * gt
                mom[3 + j] = b2 * mom[3 + j] + (1 - b2) * gt * gt
                mom[6 + j] = b1 * mom[6 + j] + (1 - b1) * gw
                mom[9 + j] = b2 * mom[9 + j] + (1 - b2) * gw * gw
                t[j] -= (lr_trans * fracs[it] / (1 - c1)) * mom[j] / (
                    np.sqrt(mom[3 + j] / (1 - c2)) + eps)
                w[j] = -(fracs[it] / (1 - c1)) * lr_rot[k] * mom[6 + j] / (
                    np.sqrt(mom[9 + j] / (1 - c2)) + eps)
            # r <- exp([w]x) r (Rodrigues, as optimise.rotvec_to_matrix)
            w0, w1, w2 = w[0], w[1], w[2]
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
        evaluate(vol, x, m, b, r, t, origin, inv_voxel, a, c, out, True)
        loss[k] = out[0]
        trans[k] = t
        rot[k] = r


@njit(nogil=True, cache=True)
def dilate(mask, offsets, out):
    """Stamp the ``offsets`` ``(M, 3)`` at the edge voxels of ``mask`` into ``out``."""
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


@njit(nogil=True, cache=True)
def splat(idx, weights, out):
    """Add ``weights`` ``(N,)`` at fractional indices ``idx`` ``(N, 3)`` into ``out``."""
    for n in range(idx.shape[0]):
        i = int(np.floor(idx[n, 0]))
        j = int(np.floor(idx[n, 1]))
        k = int(np.floor(idx[n, 2]))
        a, b, c = idx[n, 0] - i, idx[n, 1] - j, idx[n, 2] - k
        w = weights[n]
        for di in range(2):
            wi = w * (a if di else 1.0 - a)
            for dj in range(2):
                wij = wi * (b if dj else 1.0 - b)
                out[i + di, j + dj, k] += wij * (1.0 - c)
                out[i + di, j + dj, k + 1] += wij * c


@njit(nogil=True, cache=True)
def leader_clusters(order, rot, centroid, shift, angle, labels, leaders):
    """Leader clustering of poses visited in ``order`` (best first): each unlabelled pose
    leads a cluster and takes every later unlabelled pose within ``shift`` Å and ``angle``
    degrees. Fills ``labels`` (-1 on entry) and ``leaders``; returns the cluster count."""
    n_lead = 0
    k = order.shape[0]
    for a in range(k):
        lead = order[a]
        if labels[lead] >= 0:
            continue
        labels[lead] = n_lead
        leaders[n_lead] = lead
        for q in range(a + 1, k):
            j = order[q]
            if labels[j] >= 0:
                continue
            d0 = centroid[j, 0] - centroid[lead, 0]
            d1 = centroid[j, 1] - centroid[lead, 1]
            d2 = centroid[j, 2] - centroid[lead, 2]
            if np.sqrt(d0 * d0 + d1 * d1 + d2 * d2) > shift:
                continue
            trace = 0.0
            for p in range(3):
                for s in range(3):
                    trace += rot[lead, p, s] * rot[j, p, s]
            cos = min(max((trace - 1.0) / 2.0, -1.0), 1.0)
            if np.degrees(np.arccos(cos)) < angle:
                labels[j] = n_lead
        n_lead += 1
    return n_lead


@njit(nogil=True, cache=True)
def correlate_axis(src, taps, axis, out):
    """``out`` = ``src`` ``(nz, ny, nx)`` correlated along ``axis`` with the centred odd
    ``taps``, zero beyond the grid. Each output slice (axis 0), row (axis 1) or row
    (axis 2) takes all its taps while it is in cache; the innermost loop runs along
    contiguous memory with unsigned offsets into the flat views (no wrap-around checks)."""
    nz, ny, nx = src.shape
    r = (taps.shape[0] - 1) // 2
    a = src.reshape(-1)
    b = out.reshape(-1)
    b[:] = 0.0
    plane = ny * nx
    for z in range(nz):
        for y in range(ny if axis > 0 else 1):
            width = plane if axis == 0 else nx  # the output block: a slice or a row
            o = np.uint64(z * plane + y * nx)
            for t in range(taps.shape[0]):
                w = taps[t]
                d = t - r
                if axis == 2:  # shift within the row
                    lo = max(0, -d)
                    hi = min(nx, nx - d)
                    for j in range(np.uint64(lo), np.uint64(max(hi, lo))):
                        b[o + j] += w * a[np.uint64(z * plane + y * nx + d) + j]
                    continue
                k = (z if axis == 0 else y) + d  # the source slice or row
                if k < 0 or k >= (nz if axis == 0 else ny):
                    continue
                i = np.uint64(k * plane if axis == 0 else z * plane + k * nx)
                for j in range(np.uint64(width)):
                    b[o + j] += w * a[i + j]


@njit(nogil=True, cache=True)
def correlation_sums(sim, env, local, data, mask, corner, level, out):
    """The sums of the footprint and local correlations of a simulated sub-box, in one pass.

    ``sim`` ``(nz, ny, nx)`` float64 with boolean ``env`` and ``local`` on the same grid, at
    voxel ``corner`` ``[k, j, i]`` of the map ``data`` (float32, read clipped to
    ``[-level, level]``; 0 outside the map) and its footprint ``mask``. ``out`` ``(3, 6)``
    float64 gets, for the union of footprint and envelope, the footprint alone and the local
    shell, ``[n, sum x, sum x^2, sum y, sum y^2, sum x y]`` (x the map, y ``sim``).
    """
    nz, ny, nx = sim.shape
    mz, my, mx = data.shape
    lv = np.float32(level)
    out[:] = 0.0
    for z in range(nz):
        gz = z + corner[0]
        for y in range(ny):
            gy = y + corner[1]
            for x in range(nx):
                gx = x + corner[2]
                t = 0.0
                m = False
                if 0 <= gz < mz and 0 <= gy < my and 0 <= gx < mx:
                    t = np.float64(min(max(data[gz, gy, gx], -lv), lv))
                    m = mask[gz, gy, gx]
                s = sim[z, y, x]
                if m or env[z, y, x]:
                    _accumulate(out, 0, t, s)
                if m:
                    _accumulate(out, 1, t, 0.0)
                if local[z, y, x]:
                    _accumulate(out, 2, t, s)


@njit(nogil=True, cache=True, inline="always")
def _accumulate(out, row, x, y):
    """Add the pair ``(x, y)`` to the sums ``out[row]`` (``n, x, x^2, y, y^2, x y``)."""
    out[row, 0] += 1.0
    out[row, 1] += x
    out[row, 2] += x * x
    out[row, 3] += y
    out[row, 4] += y * y
    out[row, 5] += x * y


# A first run compiles these (about a minute on the CPU): say so before the silence.
from .progress import announce_compilation  # noqa: E402

announce_compilation([optimise, dilate, splat, correlate_axis, correlation_sums,
                      leader_clusters])
