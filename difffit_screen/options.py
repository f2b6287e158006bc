"""Accepted ranges of the numeric command-line options, checked once, before any work.

Each option's range lives next to its parameter: in the field metadata of the parameter
dataclasses (:mod:`difffit_screen.params`: ``fit``, ``prepare-map`` and ``composite``), or in
:data:`REPORT_RANGES` and the other tables below for the commands without one.
:func:`check_value` raises :class:`~difffit_screen.errors.InputError` with one line naming the
option and the accepted range (exit status 2); :mod:`difffit_screen.cli.checks` applies the
ranges to the parsed command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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

INIT_RANGES: dict[str, Range] = {
    "threshold": FETCH_RANGES["contour"],
    "resolution": FETCH_RANGES["resolution"],
    "gpus_per_node": count(1, 1024),
    "shards": count(1, 1_000_000),
}
"""``init`` options (the map's contour level and resolution as ``fetch-map`` takes them)."""


def check_value(option: str, value: object, rng: Range) -> None:
    """Raise :class:`InputError` unless ``value`` (a number, or a list of them) is in ``rng``."""
    values = value if isinstance(value, list | tuple) else [value]
    for v in values:
        if not rng.contains(v):
            raise InputError(f"{option} {_show(v)}: must be {rng.describe()}")


def _show(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def check_device(device: str) -> None:
    """Raise :class:`InputError` unless ``device`` is one of :data:`DEVICES` (case-sensitive)."""
    if device not in DEVICES:
        raise InputError(f"--device {device}: must be one of {', '.join(DEVICES)}")
