"""``difffit-screen fit``: its options are the fields of :class:`~difffit_screen.params.FitParams`
(search, refinement and output) and :class:`~difffit_screen.params.MapParams` (map preparation).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from ..params import FitParams, field_options, params_from
from .checks import register_checks
from .fields import add_options, option_values
from .maps import add_map_arguments, prepare_from_args

__all__ = ["add_arguments", "params_from_args", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``fit`` command's arguments and the ranges of its options."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--map", help="target map (.mrc/.map/.ccp4, optionally .gz)")
    src.add_argument("--prepared", help="prepared map (.npz from prepare-map)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("inputs", nargs="+", metavar="MODEL_OR_DIR",
                   help="structure files (.pdb/.cif, .gz), folders or globs of them, or library "
                        "shards (.parquet)")
    ranges = add_map_arguments(p)
    ranges.update(add_options(p, field_options(FitParams)))
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress lines in the log: done/total, rate, ETA, device (default on)")
    register_checks(p, ranges)


def params_from_args(args: argparse.Namespace) -> FitParams:
    """Collect :class:`FitParams` from parsed arguments."""
    options = field_options(FitParams)
    return params_from(FitParams, option_values(args, options), options)


def run(args: argparse.Namespace) -> int:
    """Handler of ``difffit-screen fit``; exit status 1 only when nothing could be fitted."""
    from ..devices import resolve_device
    from ..fit import median_molecular_volume, run_fit
    from ..maps import ContourError
    from ..outputs import lock_output_dir, prepare_output_dir

    params = params_from_args(args)
    try:
        resolve_device(params.device)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    out = prepare_output_dir(args.out, ["models"] if params.models > 0 else [])
    with lock_output_dir(out):  # before the map is prepared: a second run is refused at once
        try:
            prep = prepare_from_args(args)
        except ContourError as exc:
            volume = median_molecular_volume(args.inputs, params)
            raise exc.with_advice(volume, "the candidates (median)") from None
        outcome, record = run_fit(prep, args.inputs, out, params, progress=args.progress)
    n_fit = len({r["candidate"] for r in outcome.fits})
    for f in outcome.failures:
        print(f"difffit-screen fit: skipped {f['candidate']}: {f['reason']}", file=sys.stderr)
    for w in record["warnings"]:
        print(f"difffit-screen fit: warning: {w['warning']}", file=sys.stderr)
    print(f"fitted {n_fit} candidate(s), {len(outcome.failures)} failure(s) in "
          f"{record['timing']['total_s']:.1f} s -> {args.out}", file=sys.stderr)
    return 0 if n_fit > 0 else 1
