"""``difffit-screen pack``: parse a fetched library once into balanced shard files."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import InputError
from ..store import PREPARE_MODES, make_prepare, pack_library
from ..tables import FAILURES_SCHEMA, read_table, table_from_rows, write_table

__all__ = ["add_arguments", "run"]

log = logging.getLogger("difffit_screen.store")  # the logger name pack always logged under


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difffit-screen pack``."""
    p.add_argument("--manifest", required=True, help="manifest from 'difffit-screen fetch'")
    p.add_argument("--failures", required=True, help="output failures table (Parquet)")
    p.add_argument("--out", required=True, nargs="+", metavar="SHARD",
                   help="shard files to write (Parquet); their number is the number of shards")
    p.add_argument("--prepare", choices=PREPARE_MODES, default="full",
                   help="full models, their domains (difffit_screen.domains), or both")
    p.add_argument("--plddt-min", type=float, default=None,
                   help="AlphaFold models: drop atoms with pLDDT below this")


def run(args: argparse.Namespace) -> int:
    """Run ``difffit-screen pack``."""
    from ..library import MANIFEST_SCHEMA

    manifest = Path(args.manifest)
    if not manifest.is_file():
        raise InputError(f"{manifest}: manifest not found")
    table = read_table(manifest, MANIFEST_SCHEMA)
    failures = pack_library(table, args.out, make_prepare(args.prepare, args.plddt_min))
    write_table(table_from_rows(failures, FAILURES_SCHEMA), args.failures)
    log.info("pack: %d manifest rows, %d shards, %d failures", table.num_rows, len(args.out),
             len(failures))
    return 0
