"""``difffit-screen init DIR``: write a screen folder (:mod:`difffit_screen.init_screen`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..options import INIT_RANGES
from .checks import register_checks

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``init`` command's arguments."""
    p.add_argument("folder", metavar="DIR", help="screen folder to write (created if missing)")
    _add_map_arguments(p)
    _add_library_arguments(p)
    _add_site_arguments(p)
    p.add_argument("--workflow", help="the workflow's Snakefile (default: the installed one)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    register_checks(p, INIT_RANGES)


def _add_map_arguments(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("map (config/config.yaml: map)")
    src = m.add_mutually_exclusive_group()
    src.add_argument("--map", help="local MRC/CCP4 map")
    src.add_argument("--emdb", help="EMDB id (EMD-1234), fetched with its metadata")
    m.add_argument("--threshold", type=float, help="contour level (default: EMDB's or auto)")
    m.add_argument("--resolution", type=float, help="resolution in Å (default: EMDB's or auto)")


def _add_library_arguments(p: argparse.ArgumentParser) -> None:
    lib = p.add_argument_group("library (config/config.yaml: library)")
    lib.add_argument("--library", nargs="+", metavar="FILE_OR_GLOB",
                     help="local structure files or globs (quote globs)")
    lib.add_argument("--afdb", nargs="+", metavar="ACCESSION", help="AlphaFold DB accessions")
    lib.add_argument("--accessions-file", help="file of AlphaFold DB accessions")
    lib.add_argument("--proteome", help="UniProt proteome id (UP...), its AFDB models")
    lib.add_argument("--proteome-tar", help="AFDB per-proteome archive name")
    lib.add_argument("--pdb", nargs="+", metavar="ID", help="PDB entries")
    lib.add_argument("--name", help="library store name (default: a hash of the sources)")
    lib.add_argument("--library-root", help="folder of library stores, shared between screens "
                     "(default: resources/library in the screen folder)")
    lib.add_argument("--device", choices=["auto", "cpu", "cuda"],
                     help="fit.device (default auto: cuda in GPU jobs of a cluster)")


def _add_site_arguments(p: argparse.ArgumentParser) -> None:
    site = p.add_argument_group("site (slurm/ profile, partitions.yaml, workflow profile)")
    site.add_argument("--partition", default="cpu", help="partition of CPU jobs (default cpu)")
    site.add_argument("--gpu-partition", default="gpu",
                      help="partition of GPU jobs: fit shards, composite (default gpu)")
    site.add_argument("--account", help="SLURM account (-A); default: the user's default")
    site.add_argument("--gpu-model", help="GPU type requested (--gpus=MODEL:1), e.g. a100")
    site.add_argument("--gpus-per-node", type=int, default=8,
                      help="GPUs per node of the GPU partition (default 8)")
    site.add_argument("--shards", type=int, help="shard jobs (fit jobs): shards.count of the "
                      "config and set-scatter of the slurm/ profile (default 4, and 8 on SLURM)")


def run(args: argparse.Namespace) -> int:
    """Handler of ``difffit-screen init``."""
    from dataclasses import fields

    from ..init_screen import ScreenSettings, write_screen

    settings = ScreenSettings(**{f.name: getattr(args, f.name) for f in fields(ScreenSettings)})
    written = write_screen(args.folder, settings, workflow=args.workflow, force=args.force)
    root = Path(args.folder)
    print(f"wrote {len(written)} files to {root}:", file=sys.stderr)
    for path in written:
        print(f"  {path}", file=sys.stderr)
    print(f"next: cd {root} && snakemake --profile slurm -n   (or --profile local)",
          file=sys.stderr)
    return 0
