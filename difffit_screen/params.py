"""The parameter dataclasses of the fit, the map preparation and compositing, and their options.

Each field is spelled once, here, with everything the edges need in its metadata
(:func:`option`): the help text, the accepted :class:`~difffit_screen.options.Range`, the
command-line flag, the argument group, and the key of the screen config's section that sets it.
The ``difffit-screen fit``, ``prepare-map`` and ``composite`` options are generated from these
fields (:func:`field_options`, used by :mod:`difffit_screen.cli`), the Snakemake rules' option
strings too (:mod:`difffit_screen.workflow_helpers`), and a test checks the config schema
(``workflow/schemas/config.schema.yaml``) against them. This module imports neither torch nor
numpy, so that the command line starts fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from .errors import InputError
from .options import FRACTION, SEED, Range, count

__all__ = ["CompositeParams", "FitParams", "MapParams", "Option", "composite_command_options",
           "field_options", "option", "params_from"]

SEARCH = "search"
REFINE = "refinement, clustering and output"
MAP = "map preparation"


def option(default: Any = MISSING, *, help: str | None = None, range: Range | None = None,
           flag: Any = MISSING, group: str | None = None, config: str | None = None,
           type: type | None = None, choices: tuple | None = None, nargs: str | None = None,
           cli_default: Any = MISSING, composite: Mapping[str, Any] | None = None) -> Any:
    """A dataclass field and its command-line option, described once.

    Parameters
    ----------
    default
        The field's default.
    help
        Help text; ``{default}`` (or ``{default:g}``) is replaced by the default.
    range
        Accepted values, checked before any work (:mod:`difffit_screen.options`).
    flag
        The option (default ``--field-name``); None: the field is no command-line option.
    group
        Title of the argument group of the ``--help`` listing.
    config
        Key of the field in the screen config's section of its command (``fit``, ``map``,
        ``composite``); None: not set by the config (only through its ``extra`` key).
    type, choices, nargs
        As for :meth:`argparse.ArgumentParser.add_argument`; ``type`` defaults to the type of
        the default (a ``bool`` field is an on/off flag).
    cli_default
        The option's default when it differs from the field's (None: "not given", so that it
        can be refused next to ``--prepared``; the help still names the field's default).
    composite
        Set on a :class:`FitParams` field that is also an option of ``composite``: overrides
        of ``flag``, ``help`` and ``config`` there (its default is ``CompositeParams().fit``'s).
    """
    meta = {"help": help, "range": range, "flag": flag, "group": group, "config": config,
            "type": type, "choices": choices, "nargs": nargs, "cli_default": cli_default,
            "composite": composite}
    keep_none = ("flag", "cli_default")  # None is a value of these: no option, "not given"
    meta = {k: v for k, v in meta.items()
            if v is not MISSING and (v is not None or k in keep_none)}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Option:
    """One command-line option generated from a dataclass field (see :func:`field_options`).

    Attributes
    ----------
    name : str
        The field.
    dest, flag : str
        The argparse destination (the field, or the name of a ``composite`` flag of its own)
        and the option (``lr_trans`` and ``--lr``).
    default : object
        The option's default (what argparse returns when it is not given).
    help : str or None
        The help text, its default filled in.
    range : Range or None
        The accepted values.
    group, config : str or None
        The ``--help`` group; the key in the screen config's section.
    type, choices, nargs
        As for ``add_argument`` (``type`` bool: an on/off flag).
    """

    name: str
    dest: str
    flag: str
    default: Any
    help: str | None
    range: Range | None
    group: str | None
    config: str | None
    type: Any
    choices: tuple | None
    nargs: str | None


def field_options(cls: type, command: str | None = None, defaults: Any = None,
                  names: tuple[str, ...] | None = None) -> list[Option]:
    """The options of ``cls``'s fields that have a flag, in field order.

    Parameters
    ----------
    cls
        A parameter dataclass of this module.
    command
        ``"composite"``: only the fields marked as ``composite`` options, with its overrides.
    defaults
        An instance whose values are the defaults (e.g. ``CompositeParams().fit``); default: the
        fields' defaults.
    names
        Only these fields, in this order.
    """
    by_name = {f.name: f for f in fields(cls)}
    chosen = [by_name[n] for n in names] if names else list(by_name.values())
    out = []
    for f in chosen:
        meta = dict(f.metadata)
        dest = f.name
        if command is not None:
            if command not in meta:
                continue
            meta.update(meta[command])
            if meta[command].get("flag"):  # a flag of its own: its own dest (--clusters)
                dest = meta["flag"][2:].replace("-", "_")
        if "flag" in meta and meta["flag"] is None:
            continue
        value = getattr(defaults, f.name) if defaults is not None else _default(f)
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        text = meta.get("help")
        out.append(Option(
            name=f.name, dest=dest, flag=flag,
            default=meta.get("cli_default", value),
            help=None if text is None else text.format(default=value).replace("%", "%%"),
            range=meta.get("range"), group=meta.get("group"), config=meta.get("config"),
            type=meta.get("type", type(value)), choices=meta.get("choices"),
            nargs=meta.get("nargs")))
    return out


def _default(f: Any) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


def params_from(cls: type, values: Mapping[str, Any], options: list[Option],
                base: Any = None) -> Any:
    """An instance of ``cls`` (or ``base`` with replaced fields) from option values by dest.

    Options not in ``values`` keep their default; list values (``nargs``) become tuples.
    """
    kwargs = {}
    for o in options:
        if o.dest in values:
            v = values[o.dest]
            kwargs[o.name] = tuple(v) if isinstance(v, list) else v
    return replace(base, **kwargs) if base is not None else cls(**kwargs)


@dataclass
class MapParams:
    """How a map is prepared (:func:`~difffit_screen.maps.prepare_map`): the ``map preparation``
    options of ``fit`` and ``prepare-map``; None: the preparation's own default."""

    threshold: float | None = option(
        None, type=float, range=Range(unit="(map units)"), group=MAP, config="threshold",
        help="contour level (map units); default: median of the non-zero voxels for a "
             "segmented map, else mean + 2 sd")
    resolution: float | None = option(
        None, type=float, range=Range(0.0, 100.0, lo_open=True, unit="Å"), group=MAP,
        config="resolution", help="map resolution in Å (default 3 x voxel)")
    sigmas: tuple[float, ...] | None = option(
        None, type=float, nargs="+", range=Range(0.0, 100.0, lo_open=True, unit="Å"), group=MAP,
        help="Gaussian smoothing levels in Å (default: s/3, 2s/3, s with s = the resolution "
             "capped at 10.5 Å)")
    negative: float = option(
        -0.5, cli_default=None, range=Range(-100.0, 0.0), group=MAP,
        help="loss value outside the density footprint (default {default})")
    min_island_volume: float = option(
        200.0, cli_default=None, range=Range(0.0, 1e9, unit="Å³"), group=MAP,
        help="drop connected density islands smaller than this (Å³, default {default:g})")


_COMPOSITE_SEARCH = {"config": None}
"""``composite`` metadata of a search option of ``fit`` that ``composite`` has too."""
_KEEP = "keep {} (default: removed when a structure is read)"


MAX_STARTS = 2_000_000
"""Most start placements one candidate may get (the search is chunked, but the starts' poses
and the results of all of them are held at once: 2e6 is about 0.2 GB)."""


@dataclass
class FitParams:
    """Search, refinement and scoring parameters (defaults are the documented defaults).

    Each field's metadata (:func:`option`) holds its help, accepted range, ``fit`` option and
    config key; the ``search`` options also serve ``composite`` (with its defaults).
    """

    positions: int = option(10, range=count(1, 100_000), group=SEARCH, config="positions",
                            composite={"config": "positions"},
                            help="start positions over the density (default {default})")
    rotations: int = option(64, range=count(1, 1_000_000), group=SEARCH, config="rotations",
                            composite={"config": "rotations"},
                            help="start rotations per position (default {default})")
    iterations: int = option(80, range=count(1, 100_000), group=SEARCH, config="iterations",
                             composite={"config": "iterations"},
                             help="Adam steps (default {default})")
    atoms: str = option("all", choices=("all", "backbone", "ca"), group=SEARCH, config="atoms",
                        help="atom set fitted and scored (default {default})")
    max_search_atoms: int = option(
        200, range=count(1, 10_000_000), group=SEARCH, composite=_COMPOSITE_SEARCH,
        help="atoms used in the search, evenly spaced (default {default})")
    lr_trans: float = option(1.0, range=Range(0.0, 100.0, lo_open=True, unit="Å"), flag="--lr",
                             group=SEARCH, help="search step in Å (default {default})")
    refine_top: int = option(
        8, range=count(1, 10_000), group=REFINE,
        composite={"flag": "--clusters", "config": "clusters",
                   "help": "clusters refined and considered per subunit and round "
                           "(default {default})"},
        help="clusters refined, scored and reported per candidate (default {default})")
    refine_iterations: int = option(
        80, range=count(0, 100_000), group=REFINE, composite=_COMPOSITE_SEARCH,
        help="Adam steps of the refinement of each cluster (default {default})")
    refine_lr: float = option(0.3, range=Range(0.0, 100.0, lo_open=True, unit="Å"), flag=None)
    cluster_shift: float = option(3.0, range=Range(0.0, 1000.0, lo_open=True, unit="Å"),
                                  group=REFINE, help="cluster tolerance in Å (default {default:g})")
    cluster_angle: float = option(6.0, range=Range(0.0, 180.0, lo_open=True, unit="degrees"),
                                  group=REFINE,
                                  help="cluster tolerance in degrees (default {default:g})")
    min_inside: float = option(
        0.1, range=FRACTION, group=REFINE,
        help="fits with fewer atoms inside the contour are 'no fit' (default {default})")
    seed: int = option(0, range=SEED, group=SEARCH, config="seed",
                       composite={"config": "seed"}, help="random seed (default {default})")
    device: str = option("auto", group=SEARCH, config="device", composite=_COMPOSITE_SEARCH,
                         help="auto (CUDA if present), cpu or cuda")
    max_samples: int = option(  # 0 = auto: 1e6 per batch on CPU, 3e7 on CUDA
        0, range=count(0, 10**12), group=SEARCH,
        help="atom samples per batch; bounds memory (default 0 = auto: 1e6 on CPU, 3e7 on CUDA)")
    bucket_window: int = option(64, range=count(1, 1_000_000), flag=None)
    models: int = option(
        1, range=count(0, 10_000), group=REFINE, config="models",
        help="fitted models (mmCIF) written per candidate (default {default}; 0 = none)")
    deepen_hits: int = option(
        4, range=count(0, 1_000_000), group=SEARCH, config="deepen_hits",
        help="a candidate whose best cluster has fewer hits than this (default {default}), that "
             "fits, and for which the footprint is large (see --deepen-ratio) is searched "
             "again; 0 turns the deeper search off")
    deepen_factor: int = option(
        7, range=count(1, 1000), group=SEARCH,
        help="the deeper search adds this many times --rotations start rotations per position "
             "(default {default})")
    deepen_ratio: float = option(
        0.75, range=Range(0.0, 1e6), group=SEARCH,
        help="only candidates with room = (footprint Rg / candidate Rg)^3 >= this (default "
             "{default}) can get the deeper search: a candidate much bigger than the density "
             "cannot be placed better by searching more")
    room_cap: int = option(
        3, range=count(1, 100), group=SEARCH,
        help="a footprint with room for several candidates (room, see --deepen-ratio) gets "
             "ceil(room), at most this (default {default}), times --refine-top clusters "
             "refined and times --positions positions in the deeper search")
    map_kind: str = option(
        "whole", choices=("segment", "whole"), group=SEARCH, config="map_kind",
        help="ranking score: 'whole' (default) = local_cc, how well the candidate explains the "
             "density it occupies and its surroundings (any map: a segment, a region or a "
             "whole complex); 'segment' = footprint_cc, the whole footprint must be explained "
             "by one candidate")
    keep_hydrogens: bool = option(False, group=REFINE, help=_KEEP.format("hydrogen atoms"))
    keep_waters: bool = option(False, group=REFINE, help=_KEEP.format("waters"))
    keep_ligands: bool = option(False, group=REFINE, help=_KEEP.format(
        "ligands and ions (residues neither polymer nor water)"))

    def __post_init__(self) -> None:
        """Refuse a search too big to run: more than :data:`MAX_STARTS` start placements per
        candidate (positions x rotations, times ``1 + deepen_factor x room_cap`` with the
        deeper search), one line naming the options, before any work."""
        factor = 1 + (self.deepen_factor * self.room_cap if self.deepen_hits > 0 else 0)
        starts = self.positions * self.rotations * factor
        if starts > MAX_STARTS:
            deeper = f" x {factor} (the deeper search)" if factor > 1 else ""
            raise InputError(
                f"--positions {self.positions} x --rotations {self.rotations}{deeper} = "
                f"{starts:,} start placements per candidate: more than {MAX_STARTS:,}; lower "
                f"--positions or --rotations")


def _composite_fit() -> FitParams:
    # compositing searches 1,280 starts and refines 32 clusters per subunit every round, and
    # every copy of a subunit splits its hits: the fit's deeper search of poorly converged
    # short-listed candidates is off here
    return FitParams(positions=40, rotations=32, iterations=80, refine_top=32,
                     refine_iterations=40, models=0, deepen_hits=0)


def _map_field(name: str, default: Any = MISSING, **changes: Any) -> Any:
    """A :class:`MapParams` field's option again, for a dataclass that holds it too."""
    meta = {**next(f for f in fields(MapParams) if f.name == name).metadata, **changes}
    meta.pop("group", None)
    meta.pop("config", None)
    meta.pop("cli_default", None)
    return option(default, **meta)


@dataclass
class CompositeParams:
    """Acceptance, zeroing and stopping parameters of compositing (see
    :mod:`difffit_screen.composite`); the ``composite`` options, with ``fit``'s search ones."""

    fit: FitParams = field(default_factory=_composite_fit, metadata={"flag": None})
    copies: dict = field(default_factory=dict, metadata={"flag": None})  # --copies NAME=K
    max_rounds: int = option(6, range=count(1, 1000), config="max_rounds",
                             help="most fit / zero-out rounds (default {default})")
    clash_fraction: float = option(
        0.10, range=FRACTION, config="clash_fraction",
        help="a copy clashes when more than this fraction of its CA atoms lie within "
             "--clash-distance of another copy's (default {default})")
    clash_distance: float = option(3.0, range=Range(0.0, 100.0, lo_open=True, unit="Å"),
                                   help="CA atoms closer than this (Å) to another copy's CA "
                                        "atoms clash (default {default:g})")
    min_score: float = option(-1.0, range=Range(-1.0, 1.0),
                              help="an absolute floor on the score of an accepted copy "
                                   "(default -1: off)")
    min_z: float = option(
        3.0, range=Range(-1e6, 1e6),
        help="the largest gap in a subunit's cluster scores must put the cluster this many "
             "robust sd above the lower group (default {default})")
    min_spread: float = option(0.005, range=Range(0.0, 10.0),
                               help="floor of the lower group's spread (default {default})")
    rel_best: float = option(
        0.5, range=Range(-10.0, 10.0),
        help="(score - median) / (best - median) of the subunit's clusters must reach this "
             "(default {default})")
    min_inside: float = option(
        0.8, range=FRACTION,
        help="inside fraction must reach this x the subunit's best inside fraction (its "
             "clusters of the round and its copies accepted before; default {default})")
    zero_level: float = option(
        0.3, range=Range(0.0, 1.0, lo_open=True),
        help="zero the map where a copy's simulated density > this x its max (default "
             "{default})")
    stop_footprint: float = option(
        0.07, range=FRACTION,
        help="stop when less than this fraction of the footprint is left (default {default})")
    sigmas: tuple | None = _map_field(  # default: maps.default_sigmas(resolution)
        "sigmas", None, help="smoothing levels of the search in Å (default as for fit: "
                             "resolution x 1/3, 2/3, 1)")
    negative: float = _map_field("negative", -0.5, flag=None)
    min_island_volume: float = _map_field("min_island_volume", 200.0, flag=None)


def composite_command_options() -> tuple[list[Option], list[Option], list[Option]]:
    """The options of ``composite``: the map's (threshold, resolution), compositing's own
    (:class:`CompositeParams`) and the search options it shares with ``fit`` (the
    :class:`FitParams` fields marked ``composite``, defaults of ``CompositeParams().fit``)."""
    maps = field_options(MapParams, names=("threshold", "resolution"))
    search = field_options(FitParams, "composite", defaults=CompositeParams().fit)
    return maps, field_options(CompositeParams), search
