"""``difffit-screen report``: options and run (:func:`difffit_screen.report.write_report`)."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..report import DEFAULT_TOP, write_report

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``report`` sub-command's arguments to parser ``p``."""
    p.add_argument("results", help="results folder of a finished screen (ranking.parquet and "
                                   "a complete run.json)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prepared", help="prepared map (.npz) of the screen")
    src.add_argument("--map", help="the screen's map (MRC); default: the one in run.json")
    p.add_argument("--threshold", type=float,
                   help="contour level (default: the prepared map's, or run.json's)")
    p.add_argument("--top", type=int, default=DEFAULT_TOP,
                   help=f"top hits to export and picture (default {DEFAULT_TOP})")


def run(args: argparse.Namespace) -> int:
    """Run ``difffit-screen report``; prints the report's path."""
    if args.top < 0:
        raise InputError(f"--top {args.top}: must be zero or positive")
    index = write_report(args.results, map_path=args.map, prepared=args.prepared,
                         threshold=args.threshold, top=args.top, require_run=True)
    print(index)
    return 0
