"""The ``difffit-screen`` command line: thin argument parsing that calls the package.

Each sub-command is a :class:`Command` of :data:`COMMANDS`: its module ``cli/<module>.py`` has
``add_arguments(p)`` and ``run(args)``, and is imported only when the parser is built; the
modules import the engine (torch, scipy, matplotlib, ...) inside ``run``, so that ``--help``
and the light commands start fast. The options of ``fit``, ``prepare-map`` and ``composite``
are generated from the parameter dataclasses (:mod:`difffit_screen.params`). Every option's
range is checked before any work (:mod:`.checks`); bad input
(:class:`~difffit_screen.errors.InputError`) is printed as one line naming the file and the
problem, with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass
from functools import partial

from ..errors import InputError
from .checks import OneLineParser, register_checks, run_checks

__all__ = ["COMMANDS", "Command", "build_parser", "main", "one_line"]

log = logging.getLogger("difffit_screen")


@dataclass(frozen=True)
class Command:
    """A sub-command: its name, its module in this package, its help and description, and
    (for the modules that do not register them) the name of its ranges table in
    :mod:`difffit_screen.options`."""

    name: str
    module: str
    help: str
    description: str
    ranges: str | None = None


COMMANDS = (
    Command("fit", "fit", "fit candidates into a map and rank them",
            "Fit every candidate (structure files, folders of them, or library shards) into the "
            "map and rank them."),
    Command("prepare-map", "maps", "prepare a map once for every shard of a screen",
            "Threshold, remove islands, normalise and smooth a map; write the prepared volumes "
            "(.npz) and a JSON summary."),
    Command("aggregate", "aggregate", "merge shard results into one ranking",
            "Merge shard folders (fits/failures/run.json) into OUT/ranking.parquet, "
            "fits.parquet, failures.parquet."),
    Command("report", "report", "write the HTML review, top-hit models and a ChimeraX script",
            "Write RESULTS/report/: index.html (ranking, significance, pictures of the top hits "
            "in the density, run record), the top hits as mmCIF in the map frame and "
            "top_hits.cxc for ChimeraX.", ranges="REPORT_RANGES"),
    Command("domains", "domains", "trim low-pLDDT residues and split models into domains",
            "Split predicted models (or any structures) into compact domain candidates "
            "<name>_D<n>.cif, using PAE when given.", ranges="DOMAINS_RANGES"),
    Command("fetch", "fetch", "fetch a candidate library into a cache, write its manifest",
            "Fetch AlphaFold DB models (accessions or a UniProt proteome), RCSB entries (split "
            "into chains) and local files into a shared cache; write the manifest and the "
            "failures table.", ranges="FETCH_RANGES"),
    Command("fetch-map", "fetch_map", "download an EMDB map and its resolution/contour",
            "Download an EMDB map; read its resolution and recommended contour from the EMDB "
            "API unless given.", ranges="FETCH_RANGES"),
    Command("pack", "pack", "pack a fetched library into balanced shard files",
            "Parse the manifest's structures once and pack them (whole, as domains, or both) "
            "into the given shard Parquet files, balanced by atom count.", ranges="PACK_RANGES"),
    Command("composite", "composite", "place several subunits (and copies) into one map",
            "Fit subunits into a map of the whole complex in rounds: accept significant "
            "non-clashing placements, zero their density, refit the rest on the residual map."),
    Command("init", "init", "write a screen folder: config, workflow and profiles",
            "Write DIR/ with the screen's config, the workflow (as a Snakemake module) and its "
            "profiles, so that in DIR `snakemake --profile slurm` (or `--profile local`) runs "
            "the screen."),
)
"""The sub-commands, in the order of ``difffit-screen --help``."""


def build_parser(only: str | None = None, *, lazy: bool = False) -> argparse.ArgumentParser:
    """Return the argument parser of all sub-commands.

    Parameters
    ----------
    only
        With ``lazy``: the one sub-command whose arguments are added (its module imported);
        the others are listed by name and help only (``difffit-screen --help`` imports no
        command module).
    lazy
        Add the arguments of ``only`` alone (:func:`main`); default: of every sub-command.
    """
    parser = OneLineParser(
        prog="difffit-screen",
        description="Fit and rank atomic structures in a cryo-EM map (batched DiffFit).",
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.description)
        if not lazy or command.name == only:
            _add_arguments(p, command)
    return parser


def _add_arguments(p: argparse.ArgumentParser, command: Command) -> None:
    """Import a sub-command's module and add its arguments, checks and handler to ``p``."""
    _module(command.module).add_arguments(p)
    if command.ranges:
        from .. import options

        register_checks(p, getattr(options, command.ranges))
    p.set_defaults(handler=partial(_run, command.module))


def _command_name(argv: list[str]) -> str | None:
    """The sub-command named in ``argv``: its first word that is not an option (the
    top-level options take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _module(name: str):
    """The command module ``cli/<name>.py``."""
    return importlib.import_module(f"{__name__}.{name}")


def _run(module: str, args: argparse.Namespace) -> int:
    return _module(module).run(args)


class _VersionAction(argparse._VersionAction):
    """``--version``: the package version, looked up only when asked for (fast start)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from .. import __version__

        self.version = f"%(prog)s {__version__}"
        super().__call__(parser, namespace, values, option_string)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``difffit-screen`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_name(argv), lazy=True)
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
    except OSError as exc:  # a full disk outside the atomic writers: one line naming the file
        from ..outputs import STORAGE_ERRNOS, describe_os_error

        if exc.errno not in STORAGE_ERRNOS:
            return _internal_error(args.command, exc)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"difffit-screen {args.command}: error: {where}cannot write "
              f"({describe_os_error(exc)})", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: one line, the traceback only with -v
        return _internal_error(args.command, exc)


def _internal_error(command: str, exc: Exception) -> int:
    """Report an unexpected error (a bug) in one line, the traceback only with ``-v``."""
    log.debug("unexpected error", exc_info=True)
    print(f"difffit-screen {command}: internal error: {type(exc).__name__}: "
          f"{one_line(str(exc))} (run with -v for the traceback)", file=sys.stderr)
    return 1


def one_line(text: str) -> str:
    """``text`` with its line breaks collapsed, so that an error is always one line."""
    return " ".join(text.split())

