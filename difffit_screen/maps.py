"""Cryo-EM maps: reading and writing MRC/CCP4 files, and preparing a map for fitting.

Arrays are indexed ``[z, y, x]``; ``origin`` and ``voxel_size`` are ``[x, y, z]`` in Å, and voxel
``[k, j, i]`` lies at ``origin + (i, j, k) * voxel_size`` in the map's world frame.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np

from .errors import InputError

MAP_SUFFIXES = (".mrc", ".map", ".ccp4", ".mrc.gz", ".map.gz", ".ccp4.gz", ".mrcs")
VOXEL_SIZE_RANGE = (0.01, 50.0)
"""Å. Voxel sizes outside this range are refused: no cryo-EM map samples finer than 0.01 Å,
and at more than 50 Å per voxel an atomic model spans a voxel or two (an absurd cell, or one
given in the wrong unit)."""
COMPLEX_MODES = {3: "complex int16", 4: "complex float32"}
"""MRC modes that hold Fourier transforms, not densities."""
REAL_MODES = (0, 1, 2, 6, 12)
"""MRC modes of real-valued voxels: int8, int16, float32, uint16, float16."""


@dataclass
class DensityMap:
    """A 3-D density on a regular orthogonal grid.

    Attributes
    ----------
    data : np.ndarray
        ``(nz, ny, nx)`` float32 values.
    voxel_size : np.ndarray
        ``(3,)`` voxel edge lengths ``[x, y, z]`` in Å.
    origin : np.ndarray
        ``(3,)`` world position ``[x, y, z]`` in Å of voxel ``[0, 0, 0]``.
    path : str
        The file it was read from, if any.
    """

    data: np.ndarray
    voxel_size: np.ndarray
    origin: np.ndarray
    path: str = ""

    @property
    def shape_xyz(self) -> np.ndarray:
        """``(3,)`` grid size ``[nx, ny, nz]``."""
        return np.array(self.data.shape[::-1])

    def index_to_world(self, idx_zyx: np.ndarray) -> np.ndarray:
        """Map ``(..., 3)`` voxel indices ``[k, j, i]`` to ``(..., 3)`` world ``[x, y, z]`` in Å."""
        return self.origin + np.asarray(idx_zyx)[..., ::-1] * self.voxel_size

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Map ``(..., 3)`` world ``[x, y, z]`` to fractional indices ``[i, j, k]`` (x first)."""
        return (np.asarray(xyz) - self.origin) / self.voxel_size


def file_sha256(path: str | os.PathLike) -> str:
    """Return the hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def reorder_to_zyx(raw: np.ndarray, mapc: int, mapr: int, maps: int) -> np.ndarray:
    """Transpose a raw MRC array (sections, rows, columns) into ``[z, y, x]`` order.

    ``mapc``, ``mapr``, ``maps`` are the MRC axis codes (1 = x, 2 = y, 3 = z) of the columns,
    rows and sections.
    """
    codes = [int(maps), int(mapr), int(mapc)]  # raw axis 0, 1, 2
    if sorted(codes) != [1, 2, 3]:
        raise ValueError(f"invalid axis order mapc/mapr/maps = {mapc},{mapr},{maps}")
    return np.transpose(raw, [codes.index(a) for a in (3, 2, 1)])


def read_map(path: str | os.PathLike) -> DensityMap:
    """Read an MRC/CCP4 map (``.mrc``, ``.map``, ``.ccp4``, optionally ``.gz``).

    Honours the axis order (MAPC/MAPR/MAPS), the ORIGIN record, NSTART (used when ORIGIN is zero,
    the ChimeraX/EMDB convention) and non-cubic voxels.

    Raises
    ------
    InputError
        Missing, unreadable or corrupt file; complex (MRC mode 3 or 4: a Fourier transform);
        not 3-D; empty; non-finite values; non-orthogonal cell; a voxel size outside
        :data:`VOXEL_SIZE_RANGE`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: map file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: map file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(str(path), permissive=True) as mrc:
                raw = None if mrc.data is None else np.asarray(mrc.data)
                header = mrc.header
                voxel = np.array([mrc.voxel_size.x, mrc.voxel_size.y, mrc.voxel_size.z], float)
                axes = (int(header.mapc), int(header.mapr), int(header.maps))
                nstart_crs = np.array([header.nxstart, header.nystart, header.nzstart], float)
                origin = np.array([header.origin.x, header.origin.y, header.origin.z], float)
                angles = np.array([header.cellb.alpha, header.cellb.beta, header.cellb.gamma])
                mode = int(header.mode)
    except (OSError, ValueError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: cannot read map ({exc})") from None
    if mode in COMPLEX_MODES or (raw is not None and np.iscomplexobj(raw)):
        kind = COMPLEX_MODES.get(mode, "complex")
        raise InputError(f"{path}: MRC mode {mode} ({kind}) holds a Fourier transform, not a "
                         f"density map; give the real-space map")
    if raw is None and mode not in REAL_MODES:
        raise InputError(f"{path}: MRC mode {mode} is not a density map mode (the real-valued "
                         f"modes {', '.join(map(str, REAL_MODES))} are read)")
    if raw is None:
        raise InputError(f"{path}: not a valid MRC/CCP4 map (no data block; corrupt or truncated)")
    if raw.ndim != 3:
        raise InputError(f"{path}: map is {raw.ndim}-D, a 3-D volume is needed")
    if raw.size == 0 or min(raw.shape) < 2:
        raise InputError(f"{path}: map is empty or has fewer than 2 voxels along an axis "
                         f"(shape {raw.shape})")
    if tuple(sorted(axes)) != (1, 2, 3):
        raise InputError(f"{path}: invalid axis order MAPC/MAPR/MAPS = {axes}")
    if np.any(np.abs(angles - 90.0) > 1e-3) and np.any(angles != 0):
        raise InputError(f"{path}: non-orthogonal cell angles {angles.tolist()} are not supported")
    data = reorder_to_zyx(raw, *axes).astype(np.float32, copy=False)
    if not np.all(np.isfinite(data)):
        n_bad = int((~np.isfinite(data)).sum())
        raise InputError(f"{path}: map has {n_bad} NaN or infinite values")
    # voxel_size from mrcfile is cella / (mx, my, mz), already x, y, z.
    if np.any(voxel <= 0) or not np.all(np.isfinite(voxel)):
        raise InputError(f"{path}: invalid voxel size {voxel.tolist()} (cell dimensions missing?)")
    lo, hi = VOXEL_SIZE_RANGE
    if np.any(voxel < lo) or np.any(voxel > hi):
        size = ", ".join(f"{v:.4g}" for v in voxel)
        cell = ", ".join(f"{v:.4g}" for v in voxel * data.shape[::-1])
        raise InputError(f"{path}: voxel size ({size}) Å is outside the accepted {lo:g}-{hi:g} Å "
                         f"(cell ({cell}) Å for {data.shape[::-1]} voxels: an absurd cell, or "
                         f"one in the wrong unit?)")
    nstart_xyz = np.zeros(3)
    for crs_axis, code in enumerate(axes):  # column/row/section start -> its x/y/z axis
        nstart_xyz[code - 1] = nstart_crs[crs_axis]
    if np.any(origin != 0):
        world_origin = origin
    else:
        world_origin = nstart_xyz * voxel
    return DensityMap(np.ascontiguousarray(data), voxel, world_origin, str(path))


def write_map(path: str | os.PathLike, dmap: DensityMap) -> Path:
    """Write ``dmap`` as MRC (axis order 1,2,3, ORIGIN set, NSTART 0); ``.gz`` compresses."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compression = "gzip" if path.suffix == ".gz" else None
    with mrcfile.new(str(path), overwrite=True, compression=compression) as mrc:
        mrc.set_data(np.ascontiguousarray(dmap.data, dtype=np.float32))
        mrc.voxel_size = tuple(float(v) for v in dmap.voxel_size)
        mrc.header.origin = tuple(float(v) for v in dmap.origin)
        mrc.header.nxstart = mrc.header.nystart = mrc.header.nzstart = 0
        mrc.set_volume()
        mrc.update_header_stats()
    return path


def default_threshold(data: np.ndarray) -> float:
    """Documented default contour level when none is given (see Notes).

    Notes
    -----
    Segmented maps are exactly zero outside the segment, so the statistics are taken over the
    non-zero voxels only. The default is the level that keeps the densest half of those voxels
    when the map is segmented (more than 30 % exact zeros), and ``mean + 2 * std`` (about the top
    2-5 % of an unsegmented box; of the map clipped at :func:`robust_scale` of its absolute
    values, so that hot voxels do not count) otherwise. Give the author's level (EMDB
    recommended contour) whenever it is known.
    """
    values = data[data != 0]
    if values.size == 0:
        return 0.0
    if values.size < 0.7 * data.size:  # segmented: zero outside the segment
        return float(np.median(values[values > 0])) if np.any(values > 0) else 0.0
    # mean and sd in float64 of the map clipped at its robust extremes: a few hot voxels (1e30)
    # must neither overflow nor move the default level
    flat = np.abs(data.astype(np.float64).ravel())
    level = robust_scale(flat[flat > 0], 99.99) if np.any(flat > 0) else 0.0
    clipped = np.clip(data.astype(np.float64), -level, level)
    return float(clipped.mean() + 2.0 * clipped.std())


MAX_DEFAULT_SIGMA = 10.5


def default_sigmas(resolution: float) -> tuple[float, float, float]:
    """Default smoothing levels in Å for a map of ``resolution`` Å: ``(s/3, 2s/3, s)``.

    ``s`` is the resolution, capped at :data:`MAX_DEFAULT_SIGMA` Å: beyond about 10 Å of blur a
    low-resolution map of a complex merges into one particle-sized blob and a subunit's search
    loses its basin (measured on EMD-1883 at 20.9 Å: Rpb1 found in 4/5 runs with s = 10.5, 0/5
    with s = 20.9; see benchmarks/results/pose.md).
    """
    s = min(float(resolution), MAX_DEFAULT_SIGMA)
    return (s / 3.0, 2.0 * s / 3.0, s)


@dataclass
class PreparedMap:
    """A map prepared for fitting (see :func:`prepare_map`).

    Attributes
    ----------
    raw : DensityMap
        The input map (unchanged values).
    mask : np.ndarray
        ``(nz, ny, nx)`` bool footprint: above threshold, small islands removed.
    normalised : np.ndarray
        ``(nz, ny, nx)`` float32 in ``[0, 1]``, zero outside the footprint.
    loss_volume : DensityMap
        The combined loss volume on the search box (:func:`search_box`: the map padded by
        ``pad`` voxels on every side, cropped around the footprint in a large box; negative
        value outside the footprint, weighted sum of the smoothing levels).
    refine_volume : DensityMap
        The raw map clipped at the robust level (:func:`robust_scale`) and divided by it (not
        thresholded, not smoothed), padded
        with zeros on the same grid: the objective of the local refinement (the mean map value
        at the atoms, as ChimeraX ``fitmap`` maximises).
    threshold, resolution, negative : float
        Preparation parameters.
    sigmas, weights : tuple
        Smoothing levels (Å) and their weights (level 0 = the unsmoothed map has weight 1).
    info : dict
        Provenance and statistics (sha256 of the input, voxel counts ...).
    """

    raw: DensityMap
    mask: np.ndarray
    normalised: np.ndarray
    loss_volume: DensityMap
    refine_volume: DensityMap
    threshold: float
    resolution: float
    negative: float
    sigmas: tuple
    weights: tuple
    info: dict = field(default_factory=dict)

    @functools.cached_property
    def footprint_box(self) -> tuple[slice, slice, slice]:
        """The footprint's bounding box (:func:`footprint_bounds`) as slices of the map's
        ``[z, y, x]`` grid, found once (the mask is never changed in place): per-map work that
        concerns only the footprint reads this box, not a whole-complex map's box."""
        return index_box(*footprint_bounds(self.mask))

    def footprint_values(self) -> np.ndarray:
        """``(n,)`` raw map values of the footprint's voxels (``raw.data[mask]``, read from
        :attr:`footprint_box`)."""
        box = self.footprint_box
        return self.raw.data[box][self.mask[box]]


ROBUST_PERCENTILE = 99.9
MIN_CLIPPED_VOXELS = 3


def robust_scale(values: np.ndarray, percentile: float = ROBUST_PERCENTILE) -> float:
    """The map's robust maximum: the 99.9th percentile of the footprint ``values``, ignoring
    at least their :data:`MIN_CLIPPED_VOXELS` highest voxels.

    The ranking score, the refinement and the normalisation all read the map clipped at this
    level (:func:`clip_map`), so a few hot voxels or a spike (1000, 1e30 in a map whose
    density reaches 5) cannot dominate the correlation or pull the refined pose.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return 0.0
    k = max(MIN_CLIPPED_VOXELS, int(np.ceil(v.size * (1.0 - percentile / 100.0))))
    k = min(k, v.size - 1)
    return float(np.partition(v, v.size - 1 - k)[v.size - 1 - k])


def clip_map(data: np.ndarray, level: float) -> np.ndarray:
    """``data`` clipped to ``[-level, level]`` (float32): the robustly scaled map."""
    return np.clip(data, -level, level).astype(np.float32, copy=False)


def clip_level(prep: PreparedMap) -> float:
    """The prepared map's robust level (:func:`robust_scale`): the ranking score and the
    refinement read the raw map clipped at it (:func:`clip_map`)."""
    level = prep.info.get("clip_level")
    if level is None:  # prepared by an older version: recompute
        level = robust_scale(prep.footprint_values())
    return float(level)


def footprint_bounds(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box ``[lo, hi)`` (``[z, y, x]`` indices) of the ``True`` voxels of
    ``mask`` ``(nz, ny, nx)`` (:attr:`PreparedMap.footprint_box` for a prepared map). An
    empty mask gives an empty box at ``0``."""
    lo = np.zeros(3, int)
    hi = np.zeros(3, int)
    for axis in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if hit.size == 0:
            return np.zeros(3, int), np.zeros(3, int)
        lo[axis], hi[axis] = hit[0], hit[-1] + 1
    return lo, hi


def index_box(lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice]:
    """The slices of the index range ``[lo, hi)`` (``[z, y, x]``, inside the array)."""
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


VOLUME_PER_ATOM_A3 = 18.0
"""Å³ of molecular volume per heavy atom."""
MIN_ENCLOSED_FRACTION = 0.2
"""A contour enclosing less than this fraction of the candidates' molecular volume is too
high: the run warns, and says which level would enclose it."""


class ContourError(InputError):
    """The contour leaves no usable density; carries what is needed to suggest a level."""

    def __init__(self, message: str, data: np.ndarray, threshold: float, voxel_volume: float,
                 enclosed_a3: float):
        super().__init__(message)
        self.base_message = message
        self.data = data
        self.threshold = threshold
        self.voxel_volume = voxel_volume
        self.enclosed_a3 = enclosed_a3

    def with_advice(self, molecular_volume_a3: float | None, what: str) -> InputError:
        """The same error, with the enclosed volume against ``molecular_volume_a3`` and a
        suggested level."""
        return InputError(self.base_message + "; " + contour_advice(
            self.data, self.threshold, self.voxel_volume, self.enclosed_a3,
            molecular_volume_a3, what))


def level_enclosing(data: np.ndarray, volume_a3: float, voxel_volume: float) -> float:
    """The contour level above which ``volume_a3`` Å³ of the map lies (its k-th highest voxel)."""
    k = int(np.clip(round(volume_a3 / voxel_volume), 1, data.size))
    flat = np.asarray(data, dtype=np.float64).ravel()
    return float(np.partition(flat, flat.size - k)[flat.size - k])


def contour_advice(data: np.ndarray, threshold: float, voxel_volume: float, enclosed_a3: float,
                   molecular_volume_a3: float | None, what: str = "the candidates") -> str:
    """One sentence: what the contour encloses against a molecular volume, and a level to try.

    Without a molecular volume (``prepare-map``), a 100-residue domain (about 800 heavy atoms)
    is the reference.
    """
    if not molecular_volume_a3:
        molecular_volume_a3 = 800 * VOLUME_PER_ATOM_A3
        what = "a 100-residue domain"
    level = level_enclosing(data, molecular_volume_a3, voxel_volume)
    return (f"the contour {threshold:g} encloses {enclosed_a3:,.0f} Å³, "
            f"{enclosed_a3 / molecular_volume_a3:.0%} of the molecular volume of {what} "
            f"({molecular_volume_a3:,.0f} Å³ at {VOLUME_PER_ATOM_A3:g} Å³ per heavy atom): the "
            f"contour is too high; try --threshold {level:.4g}, which encloses that volume")


def remove_small_islands(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Drop face-connected components of ``mask`` with fewer than ``min_voxels`` voxels."""
    if min_voxels <= 1 or not mask.any():
        return mask
    from scipy import ndimage  # here: reading a map (and fetch, via file_sha256) needs no scipy

    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


def smooth(volume: np.ndarray, sigma_a: float, voxel_size: np.ndarray) -> np.ndarray:
    """Gaussian-smooth a ``[z, y, x]`` volume with ``sigma_a`` in Å (per-axis in voxels)."""
    from scipy import ndimage

    sigma_vox = sigma_a / np.asarray(voxel_size, float)[::-1]
    return ndimage.gaussian_filter(volume, sigma=sigma_vox, mode="nearest", truncate=3.0)


CROP_MARGIN_A = 20.0
"""Å of map kept beyond the footprint, the padding and the smoothing's reach in the
refinement volume (:func:`search_box`): an atom further out than that is in no fit."""


def prepare_map(
    dmap: DensityMap,
    threshold: float | None = None,
    resolution: float | None = None,
    sigmas: tuple[float, ...] | None = None,
    weights: tuple[float, ...] | None = None,
    negative: float = -0.5,
    min_island_volume: float = 200.0,
    pad_a: float | None = None,
) -> PreparedMap:
    """Prepare a map for fitting (DiffFit paper §3.1.2, with Å units and one combined volume).

    Steps: threshold; drop face-connected islands smaller than ``min_island_volume`` Å³;
    normalise to ``[0, 1]`` by the robust maximum of the footprint (:func:`robust_scale`: its
    99.9th percentile, ignoring at least its 3 highest voxels; clipped at 1);
    set ``negative`` outside the footprint (level 0); smooth level 0 with each
    Gaussian ``sigma`` (Å, not voxels) so that the negative margin becomes a slope that points
    back into the density; and precompute ``level0 + sum_j w_j level_j`` as one loss volume.
    Trilinear sampling is linear in voxel values, so sampling the combined volume once per atom
    gives exactly the loss and gradient of sampling every level and summing.

    The volumes are padded by ``pad_a`` Å (default ``2 * max(sigmas)``, at least 2 voxels) of
    ``negative`` on every side, so that atoms leaving the box are penalised and pulled back; a
    box much larger than its density is cropped to the footprint plus the padding, the
    smoothing's reach and :data:`CROP_MARGIN_A` (:func:`search_box`).

    Parameters
    ----------
    dmap : DensityMap
        The input map.
    threshold : float, optional
        Contour level in map units; default :func:`default_threshold`.
    resolution : float, optional
        Map resolution in Å (used for simulated weights and scores); default ``3 * voxel``.
    sigmas : tuple of float, optional
        Gaussian sigmas in Å of the smoothing levels; default :func:`default_sigmas`,
        ``resolution * (1/3, 2/3, 1)`` with the resolution capped at 10.5 Å
        (smoothing that scales with the map's resolution: enough to widen the capture basin,
        not so much that neighbouring subunits of a complex merge into one blob).
    weights : tuple of float, optional
        Weight per smoothing level (default 1 each).
    negative : float
        Value outside the footprint.
    min_island_volume : float
        Islands smaller than this many Å³ are removed.
    pad_a : float, optional
        Padding in Å.

    Raises
    ------
    InputError
        If no voxel is left above the threshold, the threshold is below every voxel, or the map
        (or the density above the threshold) is constant; :class:`ContourError` when no
        connected density of ``min_island_volume`` is left.
    """
    threshold, resolution, sigmas, weights = resolve_settings(dmap, threshold, resolution,
                                                              sigmas, weights)
    mask, n_before = footprint_mask(dmap, threshold, min_island_volume)
    normalised, scale = normalise_footprint(dmap, mask, threshold)
    loss_volume, refine_volume = search_volumes(dmap, mask, normalised, scale, negative, sigmas,
                                                weights, pad_a)
    return PreparedMap(
        raw=dmap,
        mask=mask,
        normalised=normalised,
        loss_volume=loss_volume,
        refine_volume=refine_volume,
        threshold=threshold,
        resolution=float(resolution),
        negative=float(negative),
        sigmas=tuple(float(s) for s in sigmas),
        weights=tuple(float(w) for w in weights),
        info=prepared_info(dmap, mask, n_before, scale),
    )


def resolve_settings(dmap: DensityMap, threshold: float | None, resolution: float | None,
                     sigmas: tuple[float, ...] | None, weights: tuple[float, ...] | None
                     ) -> tuple[float, float, tuple[float, ...], tuple[float, ...]]:
    """``(threshold, resolution, sigmas, weights)`` of :func:`prepare_map`, defaults filled in
    and checked (a finite threshold, one weight per smoothing level)."""
    threshold = float(default_threshold(dmap.data) if threshold is None else threshold)
    if resolution is None:
        resolution = float(3.0 * dmap.voxel_size.mean())
    if sigmas is None:
        sigmas = default_sigmas(resolution)
    if weights is None:
        weights = tuple(1.0 for _ in sigmas)
    if len(weights) != len(sigmas):
        raise InputError(f"{len(weights)} smoothing weights given for {len(sigmas)} levels")
    if not np.isfinite(threshold):
        raise InputError(f"{dmap.path or 'map'}: threshold {threshold:g} is not a finite number")
    return threshold, resolution, sigmas, weights


def footprint_mask(dmap: DensityMap, threshold: float, min_island_volume: float
                   ) -> tuple[np.ndarray, int]:
    """The footprint ``(nz, ny, nx)``: voxels above ``threshold``, without face-connected
    islands smaller than ``min_island_volume`` Å³; and the voxel count above the threshold.

    Raises :class:`InputError` for a constant map or a threshold that leaves no voxel or lies
    below every voxel, :class:`ContourError` when no island is large enough.
    """
    data, name = dmap.data, dmap.path or "map"
    lo_value, hi_value = float(data.min()), float(data.max())
    if hi_value - lo_value <= 1e-6 * max(abs(hi_value), abs(lo_value), 1e-30):
        raise InputError(f"{name}: the map is constant (every voxel is {hi_value:g}): there is "
                         f"no density to fit into")
    mask = data > threshold
    if not mask.any():
        raise InputError(f"{name}: threshold {threshold:g} leaves no voxel (map max "
                         f"{hi_value:g})")
    if mask.all():
        raise InputError(f"{name}: threshold {threshold:g} is below every voxel (map min "
                         f"{lo_value:g}): the contour encloses the whole box; give the "
                         f"author's contour level")
    voxel_volume = float(np.prod(dmap.voxel_size))
    n_before = int(mask.sum())
    mask = remove_small_islands(mask, int(np.ceil(min_island_volume / voxel_volume)))
    if not mask.any():
        raise ContourError(
            f"{name}: no connected density of at least {min_island_volume:g} Å³ above threshold "
            f"{threshold:g}", data, threshold, voxel_volume, n_before * voxel_volume)
    return mask, n_before


def normalise_footprint(dmap: DensityMap, mask: np.ndarray, threshold: float
                        ) -> tuple[np.ndarray, float]:
    """The map divided by the footprint's robust maximum (:func:`robust_scale`), clipped to
    ``[0, 1]`` and zero outside the footprint (float32), and that maximum.

    Raises :class:`InputError` when the density in the footprint is constant or not positive.
    """
    data, name = dmap.data, dmap.path or "map"
    inside = data[mask]
    if float(inside.max() - inside.min()) <= 1e-6 * max(abs(float(inside.max())), 1e-30):
        raise InputError(f"{name}: the density above threshold {threshold:g} is constant "
                         f"({float(inside.max()):g}): no contrast to fit to")
    scale = robust_scale(inside)
    if scale <= 0:
        raise InputError(f"{name}: density above threshold {threshold:g} is not positive")
    return np.where(mask, np.clip(data / scale, 0.0, 1.0), 0.0).astype(np.float32), scale


def search_volumes(dmap: DensityMap, mask: np.ndarray, normalised: np.ndarray, scale: float,
                   negative: float, sigmas: tuple[float, ...], weights: tuple[float, ...],
                   pad_a: float | None) -> tuple[DensityMap, DensityMap]:
    """The loss volume and the refinement volume of :func:`prepare_map`, on the search box.

    Padding ``pad_a`` Å (default ``2 * max(sigmas)``, at least 2 voxels). The refinement
    volume's box is the footprint grown by the padding, the smoothing's reach (3 sigma) and
    :data:`CROP_MARGIN_A`, within the padded map (:func:`search_box`); the loss volume's is
    the footprint grown by the smoothing's reach and 2 voxels only (within the same padded
    map): beyond that reach it is the constant ``negative * (1 + sum(weights))``, which
    "border" sampling returns outside the box, so the smaller box samples the same everywhere
    and the search reads a smaller, more cache-resident volume.
    """
    if pad_a is None:
        pad_a = 2.0 * max(sigmas, default=0.0)
    voxel_zyx = dmap.voxel_size[::-1]
    pad = np.maximum(np.ceil(pad_a / voxel_zyx).astype(int), 2)  # z, y, x
    smoothing_a = 3.0 * max(sigmas, default=0.0)  # the smoothing's reach (truncate=3)
    smoothing = np.ceil(smoothing_a / voxel_zyx).astype(int) + 2
    reach = pad + np.ceil((smoothing_a + CROP_MARGIN_A) / voxel_zyx).astype(int)
    # crop first, then compute: a big box's empty margin is never copied or transformed
    lo, hi = search_box(mask, pad, reach)
    refine = (clip_map(take_box(dmap.data, lo, hi, 0.0), scale) / scale).astype(np.float32)
    refine_volume = DensityMap(refine, dmap.voxel_size, dmap.origin + lo[::-1] * dmap.voxel_size)
    # the loss volume is constant beyond the smoothing's reach of the footprint, which is what
    # "border" sampling returns outside its box: it needs no more box than that reach
    lo, hi = search_box(mask, pad, smoothing)
    level0 = np.where(take_box(mask, lo, hi, False), take_box(normalised, lo, hi, 0.0),
                      negative).astype(np.float32)
    loss_volume = DensityMap(combine_levels(level0, sigmas, weights, dmap.voxel_size),
                             dmap.voxel_size, dmap.origin + lo[::-1] * dmap.voxel_size)
    return loss_volume, refine_volume


def combine_levels(level0: np.ndarray, sigmas: tuple[float, ...], weights: tuple[float, ...],
                   voxel_size: np.ndarray) -> np.ndarray:
    """The combined loss volume ``level0 + sum_j w_j smooth(level0, sigma_j)`` (float32).

    ``level0`` ``(nz, ny, nx)`` is the normalised map in the footprint and ``negative``
    outside it (on the search box, :func:`search_box`); ``sigmas`` in Å.
    """
    combined = level0.copy()
    for sigma, w in zip(sigmas, weights, strict=True):
        if sigma <= 0 or w == 0:
            continue
        combined += w * smooth(level0, sigma, voxel_size).astype(np.float32)
    return combined


def search_box(mask: np.ndarray, pad: np.ndarray, reach: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """The index range ``[lo, hi)`` (``[z, y, x]``) of the loss and refinement volumes.

    The footprint's bounding box grown by ``reach`` voxels, but never beyond the map padded by
    ``pad`` voxels (``lo`` may be negative, ``hi`` beyond the map: padding). A map whose
    density fills its box keeps the whole padded box; a big box around a small footprint
    (a zero-padded map, a whole-complex box) is cropped, so the search's volume, its memory and
    its cache footprint follow the density, not the box. With ``reach`` at least the padding
    plus the smoothing's reach, the loss volume inside the box is the same as without the crop
    and points outside it sample the same constant.
    """
    lo, hi = footprint_bounds(mask)
    return np.maximum(lo - reach, -pad), np.minimum(hi + reach, np.array(mask.shape) + pad)


def take_box(volume: np.ndarray, lo: np.ndarray, hi: np.ndarray, fill: float) -> np.ndarray:
    """The ``[lo, hi)`` index box of ``volume`` (``[z, y, x]``), ``fill`` where it leaves the
    volume; same dtype."""
    out = np.full(tuple(hi - lo), fill, dtype=volume.dtype)
    a = np.maximum(lo, 0)
    b = np.minimum(hi, volume.shape)
    if np.all(b > a):
        out[tuple(slice(a[i] - lo[i], b[i] - lo[i]) for i in range(3))] = \
            volume[tuple(slice(a[i], b[i]) for i in range(3))]
    return out


def prepared_info(dmap: DensityMap, mask: np.ndarray, n_before: int, scale: float) -> dict:
    """Provenance and statistics of a prepared map (``PreparedMap.info``)."""
    voxel_volume = float(np.prod(dmap.voxel_size))
    return {
        "map_path": dmap.path,
        "map_sha256": file_sha256(dmap.path) if dmap.path and Path(dmap.path).exists() else None,
        "shape_zyx": list(dmap.data.shape),
        "voxel_size_xyz": dmap.voxel_size.tolist(),
        "origin_xyz": dmap.origin.tolist(),
        "voxels_above_threshold": n_before,
        "voxels_in_footprint": int(mask.sum()),
        "footprint_volume_a3": float(mask.sum() * voxel_volume),
        "normalisation_scale": scale,
        "clip_level": scale,
        "voxels_clipped": int((np.abs(dmap.data) > scale).sum()),
        "min_voxel": float(dmap.voxel_size.min()),
    }


def save_prepared(prep: PreparedMap, path: str | os.PathLike) -> Path:
    """Save a prepared map as a compressed ``.npz`` (everything needed to fit and report)."""

    from .outputs import atomic_write

    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        _save_npz(fh, prep)
    return path


def _save_npz(fh, prep: PreparedMap) -> None:
    import json

    np.savez_compressed(
        fh,
        raw=prep.raw.data, voxel_size=prep.raw.voxel_size, origin=prep.raw.origin,
        mask=prep.mask, normalised=prep.normalised,
        loss=prep.loss_volume.data, refine=prep.refine_volume.data,
        padded_origin=prep.loss_volume.origin, refine_origin=prep.refine_volume.origin,
        params=np.array(json.dumps({
            "threshold": prep.threshold, "resolution": prep.resolution,
            "negative": prep.negative, "sigmas": list(prep.sigmas),
            "weights": list(prep.weights), "info": prep.info, "path": prep.raw.path,
        })),
    )


def load_prepared(path: str | os.PathLike) -> PreparedMap:
    """Load a prepared map written by :func:`save_prepared`."""
    import json

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: prepared map not found")
    try:
        z = np.load(path, allow_pickle=False)
        params = json.loads(str(z["params"]))
        voxel = z["voxel_size"]
        raw = DensityMap(z["raw"], voxel, z["origin"], params.get("path") or "")
        return PreparedMap(
            raw=raw, mask=z["mask"], normalised=z["normalised"],
            loss_volume=DensityMap(z["loss"], voxel, z["padded_origin"]),
            refine_volume=DensityMap(z["refine"], voxel, z["refine_origin"]
                                     if "refine_origin" in z.files else z["padded_origin"]),
            threshold=params["threshold"], resolution=params["resolution"],
            negative=params["negative"], sigmas=tuple(params["sigmas"]),
            weights=tuple(params["weights"]), info=params["info"],
        )
    except Exception as exc:  # KeyError, ValueError, OSError, BadZipFile, EOFError, zlib.error
        raise InputError(f"{path}: not a prepared map, or a truncated one "
                         f"({type(exc).__name__}: {exc})") from None
