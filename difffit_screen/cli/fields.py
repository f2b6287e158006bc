"""Command-line options generated from the parameter dataclasses' fields.

The options of ``fit``, ``prepare-map`` and ``composite`` are the fields of
:class:`~difffit_screen.params.FitParams`, :class:`~difffit_screen.params.MapParams` and
:class:`~difffit_screen.params.CompositeParams`, each with its help, range, flag and group in
its metadata (:func:`difffit_screen.params.field_options`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from ..options import Range
from ..params import Option

__all__ = ["add_options", "option_values"]


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option],
                grouped: bool = True) -> dict[str, Range]:
    """Add ``options`` to ``parser``; returns their ranges by argparse dest.

    With ``grouped``, an option with a ``group`` goes into the argument group of that title
    (created at its first option, so that ``--help`` lists the groups in field order).
    """
    groups: dict[str, Any] = {}
    ranges: dict[str, Range] = {}
    for o in options:
        target: Any = parser
        if grouped and o.group:
            if o.group not in groups:
                groups[o.group] = _find_group(parser, o.group)
            target = groups[o.group]
        target.add_argument(o.flag, **_argument(o))
        if o.range is not None:
            ranges[o.dest] = o.range
    return ranges


def _find_group(parser: argparse.ArgumentParser, title: str) -> Any:
    """The argument group of ``title`` (a new one when the parser has none)."""
    for g in parser._action_groups:
        if g.title == title:
            return g
    return parser.add_argument_group(title)


def _argument(o: Option) -> dict[str, Any]:
    """``add_argument`` keywords of an option."""
    if o.type is bool:
        return {"action": "store_true", "dest": o.dest, "help": o.help}
    kw: dict[str, Any] = {"dest": o.dest, "default": o.default, "help": o.help}
    if o.type is not str:
        kw["type"] = o.type
    if o.choices:
        kw["choices"] = list(o.choices)
    if o.nargs:
        kw["nargs"] = o.nargs
    return kw


def option_values(args: argparse.Namespace, options: Iterable[Option]) -> dict[str, Any]:
    """The parsed values of ``options`` by argparse dest (those ``args`` has)."""
    return {o.dest: getattr(args, o.dest) for o in options if hasattr(args, o.dest)}
