"""``difffit-screen aggregate``: merge shard results into one ranking."""

from __future__ import annotations

import argparse
import sys

from ..options import AGGREGATE_RANGES
from .checks import register_checks

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``aggregate`` command's arguments and the ranges of its options."""
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--failures", nargs="*", default=[],
                   help="failure tables of earlier stages (fetch, pack) to include")
    p.add_argument("--expect", type=int, default=None,
                   help="number of shard folders the screen has: fewer (or more) is an error "
                        "(folders named <i>-of-<N> are checked for all N anyway)")
    p.add_argument("shards", nargs="+", metavar="SHARD_DIR")
    register_checks(p, AGGREGATE_RANGES)


def run(args: argparse.Namespace) -> int:
    """Handler of ``difffit-screen aggregate``."""
    from ..tables import aggregate_results

    paths = aggregate_results(args.shards, args.out, args.failures, expect=args.expect)
    print(f"aggregated {len(args.shards)} shard(s) -> {paths['ranking']}", file=sys.stderr)
    return 0
