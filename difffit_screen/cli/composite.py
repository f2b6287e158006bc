"""``difffit-screen composite``: its options are the fields of
:class:`~difffit_screen.params.CompositeParams`, the map's threshold and resolution
(:class:`~difffit_screen.params.MapParams`) and the search options of ``fit`` that compositing
shares (:class:`~difffit_screen.params.FitParams` fields marked ``composite``, with the defaults
of ``CompositeParams().fit``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from ..params import CompositeParams, FitParams, composite_command_options, params_from
from .checks import register_checks
from .fields import add_options, option_values
from .maps import META_HELP, map_settings

__all__ = ["add_arguments", "params_from_args", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``composite`` command's arguments and the ranges of its options."""
    maps, own, search = composite_command_options()
    p.add_argument("--map", required=True, help="map of the whole complex (.mrc/.map)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("inputs", nargs="+", metavar="MODEL",
                   help="subunit structure files (any frame), or folders of them")
    ranges = add_options(p, maps, grouped=False)
    p.add_argument("--meta", help=META_HELP)
    p.add_argument("--copies", nargs="*", metavar="NAME=K", default=[],
                   help="copies wanted of a subunit (NAME = file stem); without a count, copies "
                        "are placed while acceptable")
    ranges.update(add_options(p, own, grouped=False))
    ranges.update(add_options(p.add_argument_group("search (as for fit)"), search,
                              grouped=False))
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress lines in the log: done/total, rate, ETA, device (default on)")
    register_checks(p, ranges)


def params_from_args(args: argparse.Namespace) -> CompositeParams:
    """Collect :class:`CompositeParams` (with its ``fit``) from parsed arguments."""
    from ..composite import parse_copies

    _, own, search = composite_command_options()
    base = CompositeParams()
    fit = params_from(FitParams, option_values(args, search), search, base=base.fit)
    values = {k: v for k, v in option_values(args, own).items() if v is not None}
    base = replace(base, fit=fit, copies=parse_copies(args.copies))
    return params_from(CompositeParams, values, own, base=base)


def run(args: argparse.Namespace) -> int:
    """Handler of ``difffit-screen composite``; exit status 1 when nothing was placed."""
    from ..composite import run_composite
    from ..outputs import prepare_output_dir

    params = params_from_args(args)
    prepare_output_dir(args.out)
    threshold, resolution = map_settings(args.threshold, args.resolution, args.meta)
    res = run_composite(args.map, args.inputs, args.out, params, threshold, resolution,
                        args.progress)
    counts: dict[str, int] = {}
    for p in res.placements:
        counts[p.subunit] = counts.get(p.subunit, 0) + 1
    copies = ", ".join(f"{n} x{k}" for n, k in counts.items())
    print(f"placed {len(res.placements)} copies ({copies}"
          f") in {res.rounds} round(s), {res.stop_reason}; {res.seconds:.1f} s -> {args.out}",
          file=sys.stderr)
    for f in res.failures:
        print(f"difffit-screen composite: skipped {f['candidate']}: {f['reason']}",
              file=sys.stderr)
    for n, k in res.missing.items():
        print(f"difffit-screen composite: {k} requested copies of {n} not placed",
              file=sys.stderr)
    if res.placements:  # the same review report as a screen: ranking, pictures, models, .cxc
        from ..report import write_report

        index = write_report(args.out, map_path=args.map, threshold=threshold,
                             top=len(res.placements))
        print(f"report: {index}", file=sys.stderr)
    return 0 if res.placements else 1
