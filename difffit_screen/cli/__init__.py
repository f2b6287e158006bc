"""The ``difffit-screen`` command line: thin argument parsing that calls the package.

Each sub-command is registered by an ``_add_<name>`` function below and runs a ``_run_<name>``
handler; both import the command's module (``cli/<module>.py``: ``add_arguments(p)`` and
``run(args)``) only when called, and those modules import the engine (torch, scipy, ...)
inside ``run``, so that ``--help`` and the light commands start fast. The options of ``fit``,
``prepare-map`` and ``composite`` are generated from the parameter dataclasses
(:mod:`difffit_screen.params`). Bad input (:class:`~difffit_screen.errors.InputError`) is
printed as one line naming the file and the problem, with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import InputError
from .checks import OneLineParser, register_checks, run_checks

log = logging.getLogger("difffit_screen")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of all sub-commands."""
    parser = OneLineParser(
        prog="difffit-screen",
        description="Fit and rank atomic structures in a cryo-EM map (batched DiffFit).",
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


class _VersionAction(argparse._VersionAction):
    """``--version``: the package version, looked up only when asked for (fast start)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from .. import __version__

        self.version = f"%(prog)s {__version__}"
        super().__call__(parser, namespace, values, option_string)


# --- fit -------------------------------------------------------------------------------------

def _add_fit(sub: argparse._SubParsersAction) -> None:
    from .fit import add_arguments

    p = sub.add_parser("fit", help="fit candidates into a map and rank them",
                       description="Fit every candidate (structure files, folders of them, or "
                                   "library shards) into the map and rank them.")
    add_arguments(p)
    p.set_defaults(handler=_run_fit)


def _run_fit(args: argparse.Namespace) -> int:
    from .fit import run

    return run(args)


# --- report ----------------------------------------------------------------------------------

def _add_report(sub: argparse._SubParsersAction) -> None:
    from ..options import REPORT_RANGES
    from .report import add_arguments as add_report_arguments

    p = sub.add_parser("report", help="write the HTML review, top-hit models and a ChimeraX script",
                       description="Write RESULTS/report/: index.html (ranking, significance, "
                                   "pictures of the top hits in the density, run record), the top "
                                   "hits as mmCIF in the map frame and top_hits.cxc for ChimeraX.")
    add_report_arguments(p)
    register_checks(p, REPORT_RANGES)
    p.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from .report import run as run_report_command

    return run_report_command(args)


# --- domains -----------------------------------------------------------------------------------

def _add_domains(sub: argparse._SubParsersAction) -> None:
    from ..options import DOMAINS_RANGES
    from .domains import add_arguments as add_domains_arguments

    p = sub.add_parser("domains", help="trim low-pLDDT residues and split models into domains",
                       description="Split predicted models (or any structures) into compact "
                                   "domain candidates <name>_D<n>.cif, using PAE when given.")
    add_domains_arguments(p)
    register_checks(p, DOMAINS_RANGES)
    p.set_defaults(handler=_run_domains)


def _run_domains(args: argparse.Namespace) -> int:
    from .domains import run as run_domains_command

    return run_domains_command(args)


# --- fetch / fetch-map / pack (library) --------------------------------------------------------

def _add_fetch(sub: argparse._SubParsersAction) -> None:
    from ..options import FETCH_RANGES
    from .fetch import add_arguments

    p = sub.add_parser("fetch", help="fetch a candidate library into a cache, write its manifest",
                       description="Fetch AlphaFold DB models (accessions or a UniProt proteome), "
                                   "RCSB entries (split into chains) and local files into a "
                                   "shared cache; write the manifest and the failures table.")
    add_arguments(p)
    register_checks(p, FETCH_RANGES)
    p.set_defaults(handler=_run_fetch)


def _run_fetch(args: argparse.Namespace) -> int:
    from .fetch import run

    return run(args)


def _add_fetch_map(sub: argparse._SubParsersAction) -> None:
    from ..options import FETCH_RANGES
    from .fetch_map import add_arguments

    p = sub.add_parser("fetch-map", help="download an EMDB map and its resolution/contour",
                       description="Download an EMDB map; read its resolution and recommended "
                                   "contour from the EMDB API unless given.")
    add_arguments(p)
    register_checks(p, FETCH_RANGES)
    p.set_defaults(handler=_run_fetch_map)


def _run_fetch_map(args: argparse.Namespace) -> int:
    from .fetch_map import run

    return run(args)


def _add_pack(sub: argparse._SubParsersAction) -> None:
    from ..options import PACK_RANGES
    from .pack import add_arguments as add_pack_arguments

    p = sub.add_parser("pack", help="pack a fetched library into balanced shard files",
                       description="Parse the manifest's structures once and pack them (whole, "
                                   "as domains, or both) into the given shard Parquet files, "
                                   "balanced by atom count.")
    add_pack_arguments(p)
    register_checks(p, PACK_RANGES)
    p.set_defaults(handler=_run_pack)


def _run_pack(args: argparse.Namespace) -> int:
    from .pack import run as run_pack_command

    return run_pack_command(args)


# --- prepare-map / aggregate -------------------------------------------------------------------

def _add_prepare_map(sub: argparse._SubParsersAction) -> None:
    from .maps import add_arguments

    p = sub.add_parser("prepare-map", help="prepare a map once for every shard of a screen",
                       description="Threshold, remove islands, normalise and smooth a map; "
                                   "write the prepared volumes (.npz) and a JSON summary.")
    add_arguments(p)
    p.set_defaults(handler=_run_prepare_map)


def _run_prepare_map(args: argparse.Namespace) -> int:
    from .maps import run

    return run(args)


def _add_aggregate(sub: argparse._SubParsersAction) -> None:
    from .aggregate import add_arguments

    p = sub.add_parser("aggregate", help="merge shard results into one ranking",
                       description="Merge shard folders (fits/failures/run.json) into "
                                   "OUT/ranking.parquet, fits.parquet, failures.parquet.")
    add_arguments(p)
    p.set_defaults(handler=_run_aggregate)


def _run_aggregate(args: argparse.Namespace) -> int:
    from .aggregate import run

    return run(args)


# --- composite -------------------------------------------------------------------------------

def _add_composite(sub: argparse._SubParsersAction) -> None:
    from .composite import add_arguments

    p = sub.add_parser("composite", help="place several subunits (and copies) into one map",
                       description="Fit subunits into a map of the whole complex in rounds: "
                                   "accept significant non-clashing placements, zero their "
                                   "density, refit the rest on the residual map.")
    add_arguments(p)
    p.set_defaults(handler=_run_composite)


def _run_composite(args: argparse.Namespace) -> int:
    from .composite import run

    return run(args)


# --- init (a screen folder) --------------------------------------------------------------------

def _add_init(sub: argparse._SubParsersAction) -> None:
    from .init import add_arguments

    p = sub.add_parser("init", help="write a screen folder: config, workflow and profiles",
                       description="Write DIR/ with the screen's config, the workflow (as a "
                                   "Snakemake module) and its profiles, so that in DIR "
                                   "`snakemake --profile slurm` (or `--profile local`) runs "
                                   "the screen.")
    add_arguments(p)
    p.set_defaults(handler=_run_init)


def _run_init(args: argparse.Namespace) -> int:
    from .init import run

    return run(args)


# --- registered commands (helpers add theirs here) ---------------------------------------------

_COMMANDS = [_add_fit, _add_prepare_map, _add_aggregate, _add_report, _add_domains,
             _add_fetch, _add_fetch_map, _add_pack]
_COMMANDS.append(_add_composite)
_COMMANDS.append(_add_init)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``difffit-screen`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_checks(args)
        return int(args.handler(args) or 0)
    except InputError as exc:
        print(f"difffit-screen {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        return 130
    except Exception as exc:  # a bug: one line, the traceback only with -v
        log.debug("unexpected error", exc_info=True)
        print(f"difffit-screen {args.command}: internal error: {type(exc).__name__}: "
              f"{one_line(str(exc))} (run with -v for the traceback)", file=sys.stderr)
        return 1


def one_line(text: str) -> str:
    """``text`` with its line breaks collapsed, so that an error is always one line."""
    return " ".join(text.split())

