"""Fit scores.

Per-atom scores (DiffFit paper §3.1.5), with ``D`` the normalised thresholded map (``[0, 1]``,
zero outside the footprint) sampled at the fitted atoms and ``W`` the candidate's simulated
per-atom weights (:func:`~difffit_screen.structures.simulate_atom_weights`):

- ``overlap`` = ``D·W / N`` (mean overlap);
- ``correlation`` = ``D·W / (|D| |W|)``;
- ``cam`` = correlation about the mean of ``D`` and ``W``;
- ``inside_fraction`` = fraction of atoms at or above the threshold;
- ``mean_density`` = mean raw map value at the atoms (ChimeraX "average map value").

These per-atom scores do not say whether a candidate *explains* the density: a small fragment
sits in the densest spot with a high mean, a long protein leaves most atoms outside. The
ranking uses a map-to-model correlation instead, independent of the candidate's size: the
correlation about the mean between the raw map and the candidate's simulated map (Gaussians at
the atoms, amplitude = atomic number, sigma = 0.225 x resolution), over one of two regions
(:meth:`FootprintCorrelation.score_fit`):

- ``local_cc``: the candidate's envelope (its simulated map's top voxels, as many as its
  molecular volume fills: 18 Å³ per heavy atom) and a shell of :func:`shell_width` around it.
  The candidate must match the density it occupies, must not sit in empty space, and density
  right next to it that it leaves unexplained (a small candidate inside a larger density)
  counts against it. Valid for every kind of map (PowerFit's local correlation and fitmap's
  correlation about the mean inside the model's envelope are the anchors).
- ``footprint_cc``: the union of the map's whole footprint and the candidate's envelope:
  unexplained density anywhere in the footprint lowers it (a segment that one candidate must
  explain entirely).

Both lie in ``[-1, 1]`` whatever the candidate's size.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .kernels import correlation_sums, dilate_mask, gaussian_blur, splat_trilinear
from .maps import DensityMap, PreparedMap, clip_level, clip_map

VOLUME_PER_ATOM_A3 = 18.0


def sample_map(dmap: DensityMap, xyz: np.ndarray, outside: float = 0.0,
               values: np.ndarray | None = None) -> np.ndarray:
    """Trilinear values of ``dmap`` (or of ``values`` on its grid) at ``(N, 3)`` world xyz.

    Points outside the grid get ``outside``.
    """
    vol = dmap.data if values is None else values
    idx_xyz = (np.asarray(xyz, dtype=np.float64) - dmap.origin) / dmap.voxel_size
    return ndimage.map_coordinates(vol, idx_xyz[:, ::-1].T, order=1, mode="constant",
                                   cval=outside, prefilter=False)


def score_atoms(prep: PreparedMap, xyz: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """Per-atom scores of ``(N, 3)`` fitted coordinates with ``(N,)`` simulated weights."""
    raw = sample_map(prep.raw, xyz)
    d = sample_map(prep.raw, xyz, values=prep.normalised)
    w = np.asarray(weights, dtype=np.float64)
    n = max(len(d), 1)
    dw = float(d @ w)
    norm = float(np.linalg.norm(d) * np.linalg.norm(w))
    dc, wc = d - d.mean(), w - w.mean()
    norm_c = float(np.linalg.norm(dc) * np.linalg.norm(wc))
    return {
        "mean_density": float(raw.mean()) if len(raw) else float("nan"),
        "overlap": dw / n,
        "correlation": dw / norm if norm > 0 else 0.0,
        "cam": float(dc @ wc) / norm_c if norm_c > 0 else 0.0,
        "inside_fraction": float((raw >= prep.threshold).mean()) if len(raw) else 0.0,
    }


def shell_width(resolution: float, voxel: float) -> float:
    """Width in Å of the shell around a candidate's envelope that :meth:`score_fit`'s
    ``local_cc`` includes: half the resolution, at least 3 Å and two voxels, at most 8 Å."""
    return float(min(max(0.5 * resolution, 3.0, 2.0 * voxel), 8.0))


def ball_offsets(radius: float, voxel_zyx: np.ndarray) -> np.ndarray:
    """Boolean ``(2 kz + 1, 2 ky + 1, 2 kx + 1)`` ball: voxel offsets within ``radius`` Å.

    ``voxel_zyx`` are the voxel sizes in Å in array order ``[z, y, x]``; an offset
    ``(dz, dy, dx)`` belongs when ``sqrt((dz vz)^2 + (dy vy)^2 + (dx vx)^2) <= radius``.
    """
    vs = np.asarray(voxel_zyx, dtype=np.float64)
    half = np.floor(radius / vs).astype(int)
    axes = [np.arange(-k, k + 1) * v for k, v in zip(half, vs, strict=True)]
    dz, dy, dx = np.meshgrid(*axes, indexing="ij")
    return np.sqrt(dz * dz + dy * dy + dx * dx) <= radius


def dilate(mask: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """Voxels of ``mask``'s ``(nz, ny, nx)`` grid within the ``ball`` (odd-sized, centred) of a
    ``mask`` voxel: the binary dilation (:func:`difffit_screen.kernels.dilate_mask`, which
    stamps the ball at the mask's edge voxels only). Equals
    ``distance_transform_edt(~mask, sampling) <= radius`` for the ball of that radius.
    """
    return dilate_mask(mask, ball)


class FootprintCorrelation:
    """Computes the size-independent ranking ``score`` of fits in one prepared map.

    The map is read clipped at its robust level (:func:`~difffit_screen.maps.clip_level`: a
    hot voxel cannot dominate). The footprint sums are computed once per map, on the
    footprint's bounding box; each call simulates the candidate only in a sub-box around its
    atoms (the box may extend beyond the map, where the map counts as zero) and reads the map
    in that sub-box alone, so the cost does not grow with a whole-complex map's box.
    """

    def __init__(self, prep: PreparedMap):
        self.prep = prep
        self.raw = prep.raw
        self.level = clip_level(prep)
        # the arrays the compiled sums read, converted once per map (never a whole-map copy
        # per fit: a no-op for a map read by read_map, float32, and its boolean mask)
        self.data = np.ascontiguousarray(prep.raw.data, dtype=np.float32)
        self.mask = np.ascontiguousarray(prep.mask, dtype=np.bool_)
        vals = clip_map(prep.footprint_values(), self.level).astype(np.float64)
        self.fp_n = vals.size
        self.fp_sx = float(vals.sum())
        self.fp_sxx = float((vals * vals).sum())
        self.voxel_volume = float(np.prod(prep.raw.voxel_size))
        self.sigma_a = max(0.225 * prep.resolution, 0.5 * float(prep.raw.voxel_size.min()))
        self.shell = shell_width(prep.resolution, float(prep.raw.voxel_size.max()))
        self.ball = ball_offsets(self.shell, prep.raw.voxel_size[::-1])

    def simulate(self, xyz: np.ndarray, z: np.ndarray,
                 margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Simulated map of atoms ``(N, 3)`` with amplitudes ``(N,)`` in a sub-box.

        The sub-box reaches ``3 sigma`` (plus ``margin`` Å) beyond the atoms. Returns the
        sub-box values ``(nz, ny, nx)`` and its lower corner index ``[k, j, i]``.
        """
        vs = self.raw.voxel_size
        f = (np.asarray(xyz, dtype=np.float64) - self.raw.origin) / vs  # x, y, z index
        pad = np.ceil((3.0 * self.sigma_a + margin) / vs).astype(int) + 2
        lo = np.floor(f.min(0)).astype(int) - pad
        hi = np.floor(f.max(0)).astype(int) + pad + 2
        shape = (hi - lo)[::-1]  # z, y, x
        sim = splat_trilinear((f - lo)[:, ::-1], z, tuple(shape))
        sim = gaussian_blur(sim, self.sigma_a / vs[::-1], truncate=3.0, overwrite_input=True)
        return sim, lo[::-1]

    def __call__(self, xyz: np.ndarray, z: np.ndarray) -> float:
        """Footprint correlation of atoms ``(N, 3)`` with atomic numbers ``(N,)``."""
        return self.score_fit(xyz, z)["footprint_cc"]

    def score_fit(self, xyz: np.ndarray, z: np.ndarray) -> dict[str, float]:
        """Both map-to-model correlations of atoms ``(N, 3)`` with atomic numbers ``(N,)``.

        Returns
        -------
        dict
            ``footprint_cc``: correlation about the mean over the union of the map's footprint
            and the candidate's envelope (the whole segment must be explained);
            ``local_cc``: correlation about the mean over the candidate's envelope and a shell
            of :attr:`shell` Å around it (the density the candidate occupies must match it,
            and density right next to it that it leaves unexplained counts against it).
        """
        sim, lo = self.simulate(xyz, z, margin=self.shell)
        env = self.envelope(sim, len(xyz))
        local = dilate(env, self.ball)  # within the shell of the envelope
        union, in_fp, shell = correlation_sums(sim, env, local, self.data, self.mask, lo,
                                               self.level)
        # footprint voxels outside the sub-box: y = 0 there
        n = union[0] + (self.fp_n - in_fp[0])
        sx = union[1] + (self.fp_sx - in_fp[1])
        sxx = union[2] + (self.fp_sxx - in_fp[2])
        footprint_cc = correlate_sums(n, sx, sxx, *union[3:])
        local_cc = correlate_sums(*shell)
        return {"footprint_cc": footprint_cc, "local_cc": local_cc}

    def envelope(self, sim: np.ndarray, n_atoms: int) -> np.ndarray:
        """Boolean envelope of a simulated sub-box: its largest voxels, as many as the
        candidate's molecular volume (:data:`VOLUME_PER_ATOM_A3` per atom) fills."""
        n_env = max(1, round(n_atoms * VOLUME_PER_ATOM_A3 / self.voxel_volume))
        # the n_env largest voxels; most of the sub-box is ~0, so select among the rest
        flat = sim.ravel()
        candidates = flat[flat > 1e-6 * flat.max()] if flat.max() > 0 else flat[:0]
        if candidates.size > n_env:
            level = np.partition(candidates, candidates.size - n_env)[candidates.size - n_env]
        else:
            level = candidates.min() if candidates.size else np.inf
        return sim >= max(level, 1e-12)


def correlate_sums(n: int, sx: float, sxx: float, sy: float, syy: float, sxy: float) -> float:
    """Pearson correlation from the sums of ``n`` pairs (0 when either side is constant)."""
    if n < 2:
        return 0.0
    cov = sxy - sx * sy / n
    var = (sxx - sx * sx / n) * (syy - sy * sy / n)
    return float(cov / np.sqrt(var)) if var > 0 else 0.0
