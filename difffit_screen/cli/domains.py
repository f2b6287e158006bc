"""``difffit-screen domains``: split models (files or folders) into domain files and a table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..domains import (
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    DEFAULT_NCUT_MAX,
    DEFAULT_PLDDT_MIN,
    expand_model_paths,
    format_summary,
    split_model_files,
)
from ..errors import InputError
from ..outputs import lock_output_dir, prepare_output_dir

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``domains`` sub-command's options to argparse parser ``p``."""
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="structure files (PDB/mmCIF, optionally .gz) or folders of them")
    p.add_argument("--out", required=True, help="output folder for <name>_D<n>.cif and "
                                                "domains.parquet")
    p.add_argument("--pae-dir", help="folder of PAE JSON files (AlphaFold DB "
                                     "AF-<acc>-F1-predicted_aligned_error_v<N>.json or "
                                     "<name>.json); models without one are split by structure")
    p.add_argument("--plddt-min", type=float, default=DEFAULT_PLDDT_MIN,
                   help="drop residues of predicted models below this pLDDT "
                        f"(default {DEFAULT_PLDDT_MIN:g}; a negative value never trims)")
    p.add_argument("--predicted", choices=("auto", "yes", "no"), default="auto",
                   help="whether B-factors are pLDDT (default auto: AlphaFold names/headers)")
    p.add_argument("--min-size", type=int, default=DEFAULT_MIN_SIZE,
                   help=f"smallest domain in residues (default {DEFAULT_MIN_SIZE})")
    p.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE,
                   help=f"largest domain in residues (default {DEFAULT_MAX_SIZE})")
    p.add_argument("--ncut-max", type=float, default=DEFAULT_NCUT_MAX,
                   help=f"structure route: split while normalised cut < this "
                        f"(default {DEFAULT_NCUT_MAX:g})")
    p.add_argument("--no-write-models", action="store_true",
                   help="write only domains.parquet, not the domain mmCIF files")


def run(args: argparse.Namespace) -> int:
    """Handler of ``difffit-screen domains``: split models, write domains and the table.

    A model that cannot be read or split is a row of ``failures.parquet`` (and a line on
    stderr) and the rest go on; the exit status is 2 only when no model could be split. Domain
    files are named by :func:`~difffit_screen.outputs.safe_name` and written atomically; a
    reused ``--out`` first loses the domain files its previous ``domains.parquet`` lists (never
    an input) and that table (see :func:`~difffit_screen.domains.split_model_files`).
    """
    if args.min_size > args.max_size:
        raise InputError(f"--min-size {args.min_size} is larger than --max-size {args.max_size}")
    out = prepare_output_dir(args.out)
    paths = expand_model_paths(args.models)
    if not paths:
        raise InputError("no structure files among the MODEL arguments")
    with lock_output_dir(out):
        summary = split_model_files(
            paths, out, args.pae_dir,
            plddt_min=args.plddt_min if args.plddt_min >= 0 else None,
            predicted={"auto": None, "yes": True, "no": False}[args.predicted],
            write_models=not args.no_write_models, on_skip=_print_skip,
            min_size=args.min_size, max_size=args.max_size, ncut_max=args.ncut_max)
    print(format_summary(summary))
    print(f"wrote {out / 'domains.parquet'}")
    return 0 if summary["failed"] < len(paths) else 2


def _print_skip(path: Path, reason: str) -> None:
    print(f"difffit-screen domains: skipped {path}: {reason}", file=sys.stderr)
