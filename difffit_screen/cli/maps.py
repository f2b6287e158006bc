"""``difffit-screen prepare-map``, and the map options it shares with ``fit`` and ``composite``.

The map preparation options are the fields of :class:`~difffit_screen.params.MapParams`;
``--meta`` (a JSON file such as ``fetch-map`` writes) supplies the threshold and resolution
that are not given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..options import check_value
from ..params import MapParams, field_options, params_from
from .checks import option_name, register_checks
from .fields import add_options, option_values

__all__ = ["MAP_OPTIONS", "add_arguments", "add_map_arguments", "check_not_prepared",
           "map_params_from_args", "map_settings", "prepare_from_args", "run"]

MAP_OPTIONS = ("threshold", "resolution", "meta", "sigmas", "negative", "min_island_volume")
"""Options that prepare a map: meaningless (refused) together with ``--prepared``."""

META_HELP = ("JSON with 'resolution'/'contour' (e.g. from fetch-map), used when "
             "--threshold/--resolution are not given")


def add_map_arguments(p: argparse.ArgumentParser) -> dict:
    """Arguments that prepare a map (shared by ``fit`` and ``prepare-map``); returns their
    ranges by dest."""
    options = field_options(MapParams)
    ranges = add_options(p, options[:2])  # --threshold, --resolution
    group = next(g for g in p._action_groups if g.title == options[0].group)
    group.add_argument("--meta", help=META_HELP)
    ranges.update(add_options(p, options[2:]))
    return ranges


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``prepare-map`` command's arguments and the ranges of its options."""
    p.add_argument("--map", required=True, help="target map (.mrc/.map/.ccp4, optionally .gz)")
    p.add_argument("--out", required=True, help="prepared map (.npz)")
    register_checks(p, add_map_arguments(p))


def map_settings(threshold: float | None, resolution: float | None,
                 meta: str | None) -> tuple[float | None, float | None]:
    """Threshold and resolution: the given values, else ``contour``/``resolution`` of ``meta``.

    ``meta`` is a JSON file such as ``fetch-map`` writes from the EMDB entry.
    """
    if meta:
        meta_path = Path(meta)
        info = _read_meta(meta_path)
        ranges = {o.name: o.range for o in field_options(MapParams)}
        for key, rng in (("contour", ranges["threshold"]), ("resolution", ranges["resolution"])):
            if info.get(key) is not None:
                check_value(f"{meta_path}: '{key}'", info[key], rng)
        threshold = threshold if threshold is not None else info.get("contour")
        resolution = resolution if resolution is not None else info.get("resolution")
    return (None if threshold is None else float(threshold),
            None if resolution is None else float(resolution))


def _read_meta(meta_path: Path) -> dict[str, Any]:
    """The JSON object of a map metadata file; :class:`InputError` naming it otherwise."""
    if not meta_path.exists():
        raise InputError(f"{meta_path}: map metadata file not found")
    try:
        info = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{meta_path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise InputError(f"{meta_path}: cannot read map metadata ({exc.strerror})") from None
    if not isinstance(info, dict):
        raise InputError(f"{meta_path}: map metadata must be a JSON object with "
                         f"'resolution' and 'contour', not {type(info).__name__}")
    return info


def check_not_prepared(args: argparse.Namespace) -> None:
    """Refuse map preparation options (given with a non-default value) next to ``--prepared``."""
    given = [o for o in MAP_OPTIONS if getattr(args, o, None) is not None]
    if getattr(args, "prepared", None) and given:
        names = ", ".join(option_name(o) for o in given)
        raise InputError(f"--prepared is an already prepared map: {names} cannot be applied to "
                         f"it (prepare the map again with prepare-map, or give --map instead)")


def map_params_from_args(args: argparse.Namespace) -> MapParams:
    """The :class:`MapParams` of ``args``: given options, ``--meta``, then the defaults."""
    options = field_options(MapParams)
    values = {k: v for k, v in option_values(args, options).items() if v is not None}
    values["threshold"], values["resolution"] = map_settings(args.threshold, args.resolution,
                                                             args.meta)
    return params_from(MapParams, values, options)


def prepare_from_args(args: argparse.Namespace):
    """Read and prepare the map named by ``--map`` (or load ``--prepared``): a
    :class:`~difffit_screen.maps.PreparedMap`."""
    from ..maps import load_prepared, prepare_map, read_map

    if getattr(args, "prepared", None):
        check_not_prepared(args)
        return load_prepared(args.prepared)
    mp = map_params_from_args(args)
    return prepare_map(read_map(args.map), threshold=mp.threshold, resolution=mp.resolution,
                       sigmas=mp.sigmas, negative=mp.negative,
                       min_island_volume=mp.min_island_volume)


def run(args: argparse.Namespace) -> int:
    """Handler of ``difffit-screen prepare-map``."""
    from ..maps import ContourError, save_prepared
    from ..outputs import prepare_output_dir, write_text

    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give the prepared map's file name (.npz)")
    prepare_output_dir(out.parent)
    try:
        prep = prepare_from_args(args)
    except ContourError as exc:
        raise exc.with_advice(None, "") from None
    path = save_prepared(prep, out)
    summary = {"threshold": prep.threshold, "resolution": prep.resolution,
               "sigmas": list(prep.sigmas), "negative": prep.negative, **prep.info}
    write_text(str(path) + ".json", json.dumps(summary, indent=2))
    print(f"prepared {prep.raw.path}: threshold {prep.threshold:g}, resolution "
          f"{prep.resolution:g} Å, {prep.info['voxels_in_footprint']} footprint voxels -> {path}",
          file=sys.stderr)
    return 0
