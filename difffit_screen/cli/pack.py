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
    check_pack_paths(manifest, Path(args.failures), [Path(p) for p in args.out])
    if not manifest.is_file():
        raise InputError(f"{manifest}: manifest not found")
    table = read_table(manifest, MANIFEST_SCHEMA)
    failures = pack_library(table, args.out, make_prepare(args.prepare, args.plddt_min))
    write_table(table_from_rows(failures, FAILURES_SCHEMA), args.failures)
    log.info("pack: %d manifest rows, %d shards, %d failures", table.num_rows, len(args.out),
             len(failures))
    return 0


def check_pack_paths(manifest: Path, failures: Path, shards: list[Path]) -> None:
    """Refuse outputs that would overwrite the manifest or each other (a shard lost).

    Raises
    ------
    InputError
        A shard path given twice, or equal to ``--manifest`` or ``--failures``, or
        ``--failures`` equal to ``--manifest`` (one line naming the path).
    """
    seen: dict[Path, str] = {manifest.resolve(): "--manifest"}
    for option, path in [("--failures", failures), *[("--out", s) for s in shards]]:
        key = path.resolve()
        if key in seen:
            what = "is given twice" if seen[key] == option else f"is also {seen[key]}"
            raise InputError(f"{option} {path}: {what}; every output needs its own file")
        seen[key] = option
