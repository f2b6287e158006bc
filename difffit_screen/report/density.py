"""The density the report draws: loaded from a prepared map, an MRC file or ``run.json``, and put
next to the ChimeraX script."""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..outputs import atomic_write, safe_name
from .results import find_run_value, resolve_path

__all__ = ["MapView", "copy_map", "crop_indices", "load_map_view", "map_copy_name"]

log = logging.getLogger(__name__)


@dataclass
class MapView:
    """The density shown in the report.

    Attributes
    ----------
    data : np.ndarray
        ``(nz, ny, nx)`` float32 map values.
    origin, voxel_size : np.ndarray
        ``(3,)`` ``[x, y, z]`` in Å (voxel ``[k, j, i]`` lies at ``origin + (i, j, k) * voxel``).
    threshold : float or None
        Contour level of the screen.
    path : str
        The MRC file (empty when the map came from a prepared ``.npz`` without one).
    """

    data: np.ndarray
    origin: np.ndarray
    voxel_size: np.ndarray
    threshold: float | None
    path: str = ""


def crop_indices(shape_zyx: tuple[int, ...], origin: np.ndarray, voxel: np.ndarray,
                 xyz: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The box of a map around atoms ``xyz`` (``(N, 3)``, Å) + ``margin`` Å.

    Parameters
    ----------
    shape_zyx : tuple of int
        The map's array shape ``(nz, ny, nx)``.
    origin, voxel : np.ndarray
        ``(3,)`` ``[x, y, z]`` position of voxel ``[0, 0, 0]`` and voxel size (Å).

    Returns
    -------
    lo, hi : np.ndarray
        ``(3,)`` voxel indices ``[i, j, k]`` (x, y, z) of the box's first voxel and one past its
        last, clipped to the map; the whole map when the model lies outside it.
    """
    n_xyz = np.array(shape_zyx[::-1])
    lo = np.floor((xyz.min(axis=0) - margin - origin) / voxel).astype(int)
    hi = np.ceil((xyz.max(axis=0) + margin - origin) / voxel).astype(int) + 1
    lo, hi = np.clip(lo, 0, n_xyz - 1), np.clip(hi, 1, n_xyz)
    if np.any(hi - lo < 2):
        return np.zeros(3, int), n_xyz
    return lo, hi


def load_map_view(map_path: str | os.PathLike | None = None,
                  prepared: str | os.PathLike | None = None,
                  threshold: float | None = None, run: dict | None = None,
                  base: Path | None = None) -> MapView | None:
    """Load the density to draw: ``prepared`` .npz, else ``map_path``, else the map in ``run``.

    The threshold is ``threshold``, else the prepared map's, else the one recorded in ``run``.
    Returns None (and logs why) when no map is given or the one recorded in ``run`` is gone.
    """
    from ..maps import load_prepared, read_map

    if prepared is not None:
        prep = load_prepared(prepared)
        level = threshold if threshold is not None else prep.threshold
        path = prep.raw.path if prep.raw.path and Path(prep.raw.path).exists() else ""
        return MapView(prep.raw.data, np.asarray(prep.raw.origin, float),
                       np.asarray(prep.raw.voxel_size, float), level, path)
    if threshold is None:
        recorded = find_run_value(run, "threshold", "level")
        threshold = float(recorded) if isinstance(recorded, int | float) else None
    if map_path is None:
        map_path = recorded_map(run, base)
        if map_path is None:
            return None
    dmap = read_map(map_path)
    return MapView(dmap.data, np.asarray(dmap.origin, float), np.asarray(dmap.voxel_size, float),
                   threshold, str(map_path))


def recorded_map(run: dict | None, base: Path | None) -> Path | None:
    """The map file recorded in ``run`` (relative to ``base`` when not found as written), or
    None (logged) when none is recorded or it is gone."""
    recorded = find_run_value(run, "map", "map_path", "target_map")
    if isinstance(recorded, dict):  # the fit command's record: {"path": ..., "threshold": ...}
        recorded = recorded.get("path")
    if not recorded:
        log.warning("no map given and none recorded in run.json: report without pictures")
        return None
    path = resolve_path(str(recorded), base)
    if path is None:
        log.warning("map %s recorded in run.json not found: report without pictures", recorded)
    return path


MAP_SUFFIXES = re.compile(r"(.*?)((?:\.(?:mrc|map|ccp4|mrcs|rec|gz))+)",
                          flags=re.IGNORECASE | re.DOTALL)


def map_copy_name(name: str) -> str:
    """The name of the report's copy of a map file: its stem made safe
    (:func:`~difffit_screen.outputs.safe_name`) and its map suffixes (``.mrc``, ``.map.gz``
    ...) kept; ``map_<safe name>`` when it has none (no clash with the report's own files)."""
    match = MAP_SUFFIXES.fullmatch(name)
    if match is None or not match.group(1):
        return f"map_{safe_name(name)}"
    return safe_name(match.group(1)) + match.group(2)


def copy_map(view: MapView, out_dir: Path) -> Path:
    """Put the map next to the ``.cxc`` script: a hard link to (or a copy of) its file, under
    a safe name (:func:`map_copy_name`: the script names it in a command), or an MRC written
    from the array when it came from a prepared ``.npz`` without its file."""
    from ..maps import DensityMap, write_map

    if not view.path:
        with atomic_write(out_dir / "map.mrc") as tmp:
            write_map(tmp, DensityMap(view.data, view.voxel_size, view.origin))
        return out_dir / "map.mrc"
    src = Path(view.path)
    dest = out_dir / map_copy_name(src.name)
    if dest.exists() and dest.resolve() == src.resolve():
        return dest
    if dest.exists():
        dest.unlink()
    try:
        os.link(src, dest)  # a hard link costs no space; copying the folder copies the bytes
    except OSError:
        with atomic_write(dest) as tmp:
            shutil.copyfile(src, tmp)
    return dest
