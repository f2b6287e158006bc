"""One source for every option: the parameter dataclasses' fields (``difffit_screen.params``).

The ``fit``, ``prepare-map`` and ``composite`` options are generated from the fields; these
tests fail when the config schema, the config README or the workflow's option strings drift
from them (a config key without a field, a field's config key without a schema entry, another
default or range), and when the command line's start-up imports the heavy libraries.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from difffit_screen import workflow_helpers as wh
from difffit_screen.cli import composite, fit, maps
from difffit_screen.options import DEVICES, Range
from difffit_screen.params import (
    CompositeParams,
    FitParams,
    MapParams,
    Option,
    composite_command_options,
    field_options,
)

REPO = Path(__file__).parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
CONFIG_README = (REPO / "config" / "README.md").read_text()

WORKFLOW_KEYS = {"fit": {"extra"}, "map": {"path", "emdb", "extra"},
                 "composite": {"enabled", "subunits", "copies", "extra"}}
"""Keys of a config section that are the workflow's own, not options of the command."""


def section_options(section: str) -> list[Option]:
    """The options that a config section sets, as the workflow passes them."""
    if section == "fit":
        return field_options(FitParams)
    if section == "map":
        return field_options(MapParams)
    _maps, own, search = composite_command_options()
    return own + search


def schema_bounds(entry: dict) -> Range:
    """The accepted range of a schema entry, as a :class:`Range` (unit and kind aside)."""
    lo = entry.get("exclusiveMinimum", entry.get("minimum"))
    hi = entry.get("exclusiveMaximum", entry.get("maximum"))
    return Range(lo, hi, lo_open="exclusiveMinimum" in entry,
                 hi_open="exclusiveMaximum" in entry)


def schema_type(o: Option) -> str:
    if o.type is bool:
        return "boolean"
    if o.choices or o.type is str:
        return "string"
    return "integer" if o.range is not None and o.range.integer else "number"


@pytest.mark.parametrize("section", ["fit", "map", "composite"])
def test_config_schema_section_matches_the_fields(section):
    schema = SCHEMA["properties"][section]["properties"]
    options = {o.config: o for o in section_options(section) if o.config}
    keys = set(schema) - WORKFLOW_KEYS[section]
    assert keys - set(options) == set(), f"config keys of {section} without a field"
    assert set(options) - keys == set(), f"fields with a {section} config key but no schema entry"
    for key, o in options.items():
        entry = schema[key]
        types = entry["type"] if isinstance(entry["type"], list) else [entry["type"]]
        assert schema_type(o) in types, (key, types)
        assert entry.get("default") in (None, o.default), (key, entry.get("default"), o.default)
        if o.range is not None:
            rng = schema_bounds(entry)
            assert (rng.lo, rng.hi, rng.lo_open, rng.hi_open) == \
                (o.range.lo, o.range.hi, o.range.lo_open, o.range.hi_open), key
        else:
            assert schema_bounds(entry) == Range(), key
        choices = o.choices or (DEVICES if o.dest == "device" else None)
        if choices:
            assert set(entry["enum"]) - {None} == set(choices), key


@pytest.mark.parametrize("section", ["fit", "map", "composite"])
def test_config_readme_documents_every_key_with_its_default(section):
    for o in section_options(section):
        if not o.config:
            continue
        row = re.search(rf"^\| `{section}\.{o.config}` \| ([^|]+) \|", CONFIG_README, re.M)
        assert row, f"{section}.{o.config} not in config/README.md"
        cell = row.group(1).strip().replace("`", "")
        shown = re.fullmatch(r"null \((.+)\)", cell)
        value = shown.group(1) if shown else cell
        expected = "null" if o.default is None else \
            f"{o.default:g}" if isinstance(o.default, float) else str(o.default)
        assert value == expected, (f"{section}.{o.config}", value, expected)


def every_key_set() -> dict:
    """A config that sets every option key of the fit, map and composite sections (to a value
    other than the default, where the range allows)."""
    config: dict = {"fit": {}, "map": {}, "composite": {}}
    for section in config:
        for o in section_options(section):
            if o.config and o.dest != "device":
                config[section][o.config] = other_value(o)
    return config


def other_value(o: Option):
    if o.choices:
        return next(c for c in o.choices if c != o.default)
    if o.type is bool:
        return not o.default
    value = 2 if o.default in (None, 1) else o.default + 1
    return int(value) if o.range is not None and o.range.integer else float(value) / 2


def parse(add_arguments, argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(argv)


def test_workflow_option_strings_are_options_of_the_commands():
    config = every_key_set()
    args = parse(fit.add_arguments, ["--map", "m.mrc", "--out", "o", "x.pdb",
                                     *wh.fit_options(config).split()])
    for o in field_options(FitParams):
        if o.config and o.dest != "device":
            assert getattr(args, o.dest) == config["fit"][o.config], o.dest
    args = parse(maps.add_arguments, ["--map", "m.mrc", "--out", "o.npz",
                                      *wh.map_options(config).split()])
    for o in field_options(MapParams):
        if o.config:
            assert getattr(args, o.dest) == config["map"][o.config], o.dest
    args = parse(composite.add_arguments, ["--map", "m.mrc", "--out", "o", "x.pdb",
                                           *wh.composite_options(config).split()])
    maps_, own, search = composite_command_options()
    for o in maps_:
        assert getattr(args, o.dest) == config["map"][o.config], o.dest
    for o in own + search:
        if o.config:
            assert getattr(args, o.dest) == config["composite"][o.config], o.dest


def test_unset_keys_keep_the_command_defaults():
    assert wh.fit_options({"fit": {"positions": None, "seed": None, "device": "cpu"}}) == ""
    assert wh.map_options({"map": {"threshold": None}}) == ""
    assert wh.composite_options({"composite": {"enabled": True}}) == ""
    assert wh.fit_options({"fit": {"seed": 0, "extra": "--lr 2"}}) == "--seed 0 --lr 2"


def test_parameter_defaults_are_the_option_defaults():
    args = parse(fit.add_arguments, ["--map", "m.mrc", "--out", "o", "x.pdb"])
    assert fit.params_from_args(args) == FitParams()
    args = parse(maps.add_arguments, ["--map", "m.mrc", "--out", "o.npz"])
    assert maps.map_params_from_args(args) == MapParams()
    args = parse(composite.add_arguments, ["--map", "m.mrc", "--out", "o", "x.pdb"])
    assert composite.params_from_args(args) == CompositeParams()
    args = parse(composite.add_arguments, ["--map", "m", "--out", "o", "x.pdb", "--clusters",
                                           "5", "--sigmas", "2", "4", "--copies", "x=2"])
    params = composite.params_from_args(args)
    assert params.fit.refine_top == 5 and params.sigmas == (2.0, 4.0) and params.copies == {"x": 2}


def test_map_kind_choices_are_the_score_columns():
    from difffit_screen.fit import SCORE_COLUMN

    (kind,) = [o for o in field_options(FitParams) if o.dest == "map_kind"]
    assert set(kind.choices) == set(SCORE_COLUMN)


HEAVY = ("torch", "scipy", "matplotlib", "numpy", "pyarrow")


def heavy_imports(code: str) -> set[str]:
    """The :data:`HEAVY` libraries imported by running ``code`` in a fresh interpreter."""
    code += (f"\nimport sys\nprint('imported:', *(m for m in {HEAVY!r} if m in sys.modules),"
             f" file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return set(proc.stderr.splitlines()[-1].split()) - {"imported:"}


def test_command_line_start_imports_no_heavy_library():
    """``difffit-screen --help`` imports no command module and none of the heavy libraries;
    the parsers of ``fit``, ``prepare-map``, ``composite``, ``aggregate`` and ``init`` none
    either (their modules import the engine inside ``run``)."""
    assert heavy_imports(
        "from difffit_screen.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass") == set()
    assert heavy_imports(
        "import argparse, importlib\n"
        "for name in ('fit', 'maps', 'composite', 'aggregate', 'init'):\n"
        "    mod = importlib.import_module('difffit_screen.cli.' + name)\n"
        "    mod.add_arguments(argparse.ArgumentParser())") == set()


@pytest.mark.parametrize("command", ["aggregate", "report", "fetch", "fetch-map", "pack"])
def test_light_commands_start_without_torch_or_scipy(command):
    """Their parsers (and what their modules import) need neither torch nor scipy."""
    assert heavy_imports(
        "from difffit_screen.cli import main\n"
        f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass"
    ).isdisjoint({"torch", "scipy", "matplotlib"})


def test_a_command_builds_its_own_arguments_alone():
    from difffit_screen.cli import COMMANDS, build_parser

    parser = build_parser("aggregate", lazy=True)
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {c.name for c in COMMANDS}
    built = {name for name, p in sub.choices.items() if len(p._actions) > 1}
    assert built == {"aggregate"}
    args = parser.parse_args(["aggregate", "--out", "o", "s1", "s2"])
    assert args.shards == ["s1", "s2"] and callable(args.handler)
