"""The parser of the command line, and its checks: every option's range, before any work.

A sub-command registers the accepted ranges of its options (:func:`register_checks`, from the
parameter dataclasses' metadata or the tables of :mod:`difffit_screen.options`);
:func:`run_checks` applies them to the parsed arguments and raises
:class:`~difffit_screen.errors.InputError` with one line naming the option and the range.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from ..errors import InputError
from ..options import Range, check_device, check_value

__all__ = ["OneLineParser", "option_name", "register_checks", "run_checks"]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``prog: error: message``), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def option_name(dest: str, parser: argparse.ArgumentParser | None = None) -> str:
    """The command-line spelling of an argparse ``dest`` (``lr_trans`` -> ``--lr``)."""
    if parser is not None:
        for action in parser._actions:
            if action.dest == dest and action.option_strings:
                return max(action.option_strings, key=len)
    return "--" + dest.replace("_", "-")


def register_checks(parser: argparse.ArgumentParser, ranges: Mapping[str, Range]) -> None:
    """Attach ``ranges`` (by argparse dest) to a sub-command's parser; :func:`run_checks`
    applies them."""
    names = {dest: option_name(dest, parser) for dest in ranges}
    parser.set_defaults(_option_checks=(dict(ranges), names))


def run_checks(args: argparse.Namespace) -> None:
    """Check ``args`` against the ranges registered for its sub-command, and ``--device``.

    Raises :class:`InputError` (one line naming the option and the accepted range) on the
    first value out of range, or an empty path (:func:`check_paths`).
    """
    check_paths(args)
    ranges, names = getattr(args, "_option_checks", ({}, {}))
    for dest, rng in ranges.items():
        value = getattr(args, dest, None)
        if value is not None:
            check_value(names.get(dest) or option_name(dest), value, rng)
    if getattr(args, "device", None) is not None:
        check_device(args.device)


PATH_ARGUMENTS = {
    "out": "--out", "folder": "DIR", "results": "RESULTS", "inputs": "MODEL_OR_DIR",
    "shards": "SHARD_DIR", "models": "MODEL", "map": "--map", "prepared": "--prepared",
    "manifest": "--manifest", "failures": "--failures", "meta": "--meta",
    "workflow": "--workflow", "library_root": "--library-root",
    "accessions_file": "--accessions-file", "pae_dir": "--pae-dir", "cache": "--cache",
    "spec": "--spec",
}
"""Arguments (argparse dest -> how the user wrote it) that name files or folders."""


def check_paths(args: argparse.Namespace) -> None:
    """Refuse an empty file or folder name (``--out ''`` would write into the current folder).

    Raises
    ------
    InputError
        One line naming the argument.
    """
    for dest, shown in PATH_ARGUMENTS.items():
        value = getattr(args, dest, None)
        values = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, str) and not v.strip() for v in values):
            raise InputError(f"{shown} '': empty path (give a file or folder name; '.' for the "
                             f"current folder)")
