"""Accepted ranges of the numeric command-line options, checked once, before any work.

Each option's range lives next to its parameter: as ``dataclasses.field(metadata={"range":
Range(...)})`` on the parameter dataclasses (:class:`~difffit_screen.fit.FitParams`,
:class:`~difffit_screen.composite.CompositeParams`), or in :data:`MAP_RANGES` and the other
tables below for options that are not dataclass fields. :func:`check_ranges` validates a parsed
``argparse.Namespace`` against them and raises :class:`~difffit_screen.errors.InputError` with
one line naming the option and the accepted range (exit status 2).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from .errors import InputError

DEVICES = ("auto", "cpu", "cuda")
"""Accepted ``--device`` values (case-sensitive)."""


@dataclass(frozen=True)
class Range:
    """An accepted numeric range: ``lo <= value <= hi`` (``<`` where open), finite.

    Attributes
    ----------
    lo, hi : float or None
        Bounds (None: unbounded on that side).
    lo_open, hi_open : bool
        Whether the bound itself is excluded.
    integer : bool
        Whether only whole numbers are accepted.
    unit : str
        Unit quoted in the message (``"Å"``, ``"degrees"``).
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    unit: str = ""

    def describe(self) -> str:
        """The accepted range in words, e.g. ``"a number > 0 and <= 100 Å"``."""
        kind = "a whole number" if self.integer else "a finite number"
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {_fmt(self.lo)}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {_fmt(self.hi)}")
        text = f"{kind} {' and '.join(parts)}" if parts else kind
        return f"{text} {self.unit}".rstrip()

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the range (and is finite, and whole if ``integer``)."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        if not math.isfinite(v):
            return False
        if self.integer and v != int(v):
            return False
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return not (self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)))


def _fmt(x: float) -> str:
    return f"{x:g}" if not float(x).is_integer() or abs(x) >= 1e6 else str(int(x))


def count(lo: int = 1, hi: int | None = None) -> Range:
    """A whole-number range ``lo..hi``."""
    return Range(lo, hi, integer=True)


SEED = Range(0, 2**32 - 1, integer=True)
FRACTION = Range(0.0, 1.0)

MAP_RANGES: dict[str, Range] = {
    "threshold": Range(unit="(map units)"),
    "resolution": Range(0.0, 100.0, lo_open=True, unit="Å"),
    "sigmas": Range(0.0, 100.0, lo_open=True, unit="Å"),
    "negative": Range(-100.0, 0.0),
    "min_island_volume": Range(0.0, 1e9, unit="Å³"),
}
"""Map preparation options (``fit``, ``prepare-map``, ``composite``)."""

DOMAINS_RANGES: dict[str, Range] = {
    "plddt_min": Range(None, 100.0),  # a negative value never trims
    "min_size": count(1, 100_000),
    "max_size": count(1, 1_000_000),
    "ncut_max": Range(0.0, 10.0, lo_open=True),
}
"""``domains`` options."""

REPORT_RANGES: dict[str, Range] = {
    "threshold": Range(unit="(map units)"),
    "top": count(0, 100_000),
}
"""``report`` options."""

PACK_RANGES: dict[str, Range] = {"plddt_min": Range(0.0, 100.0)}
"""``pack`` options."""

FETCH_RANGES: dict[str, Range] = {
    "retries": count(0, 100),
    "timeout": Range(0.0, 86400.0, lo_open=True, unit="s"),
    "backoff": Range(0.0, 3600.0, unit="s"),
    "rate": Range(0.0, 1e6, lo_open=True, unit="requests/s"),
    "workers": count(1, 256),
    "resolution": Range(0.0, 100.0, lo_open=True, unit="Å"),
    "contour": Range(unit="(map units)"),
}
"""``fetch`` / ``fetch-map`` options."""

AGGREGATE_RANGES: dict[str, Range] = {"expect": count(1, 10_000_000)}
"""``aggregate`` options."""


def dataclass_ranges(cls: type, rename: Mapping[str, str] | None = None) -> dict[str, Range]:
    """The ``range`` metadata of a dataclass's fields, keyed by field (or ``rename``\\ d) name."""
    rename = rename or {}
    return {rename.get(f.name, f.name): f.metadata["range"] for f in fields(cls)
            if "range" in f.metadata}


def option_name(dest: str, parser: argparse.ArgumentParser | None = None) -> str:
    """The command-line spelling of an argparse ``dest`` (``lr_trans`` -> ``--lr``)."""
    if parser is not None:
        for action in parser._actions:
            if action.dest == dest and action.option_strings:
                return max(action.option_strings, key=len)
    return "--" + dest.replace("_", "-")


def check_value(option: str, value: object, rng: Range) -> None:
    """Raise :class:`InputError` unless ``value`` (a number, or a list of them) is in ``rng``."""
    values = value if isinstance(value, list | tuple) else [value]
    for v in values:
        if not rng.contains(v):
            raise InputError(f"{option} {_show(v)}: must be {rng.describe()}")


def _show(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def check_ranges(args: argparse.Namespace, ranges: Mapping[str, Range],
                 parser: argparse.ArgumentParser | None = None) -> None:
    """Check every option of ``args`` that has a range (None values mean "default": skipped)."""
    for dest, rng in ranges.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        check_value(option_name(dest, parser), value, rng)


def check_device(device: str) -> None:
    """Raise :class:`InputError` unless ``device`` is one of :data:`DEVICES` (case-sensitive)."""
    if device not in DEVICES:
        raise InputError(f"--device {device}: must be one of {', '.join(DEVICES)}")


def check_exclusive(args: argparse.Namespace, primary: str, others: Iterable[str],
                    defaults: Mapping[str, object] | None = None) -> None:
    """Refuse options that ``primary`` makes meaningless (given with a non-default value)."""
    if not getattr(args, primary, None):
        return
    defaults = defaults or {}
    given = [o for o in others
             if getattr(args, o, None) is not None and getattr(args, o) != defaults.get(o)]
    if given:
        names = ", ".join(option_name(o) for o in given)
        raise InputError(f"{option_name(primary)} is an already prepared map: {names} cannot "
                         f"be applied to it (prepare the map again with prepare-map, or give "
                         f"--map instead)")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``prog: error: message``), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def register_checks(parser: argparse.ArgumentParser, ranges: Mapping[str, Range]) -> None:
    """Attach ``ranges`` to a sub-command's parser; :func:`run_checks` applies them."""
    names = {dest: option_name(dest, parser) for dest in ranges}
    parser.set_defaults(_option_checks=(dict(ranges), names))


def run_checks(args: argparse.Namespace) -> None:
    """Check ``args`` against the ranges registered for its sub-command, and ``--device``.

    Raises :class:`InputError` (one line naming the option and the accepted range) on the
    first value out of range.
    """
    ranges, names = getattr(args, "_option_checks", ({}, {}))
    for dest, rng in ranges.items():
        value = getattr(args, dest, None)
        if value is not None:
            check_value(names.get(dest) or option_name(dest), value, rng)
    if getattr(args, "device", None) is not None:
        check_device(args.device)

