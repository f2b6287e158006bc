"""The README documents what the package really does: every output column, every command."""

from __future__ import annotations

from pathlib import Path

from difffit_screen.cli import build_parser
from difffit_screen.tables import FAILURES_SCHEMA, FITS_SCHEMA, RANKING_SCHEMA

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_every_output_column_is_documented():
    for schema in (FITS_SCHEMA, RANKING_SCHEMA, FAILURES_SCHEMA):
        for f in schema:
            assert f"`{f.name}`" in README, f.name


def test_every_command_is_mentioned_and_ci_runs_the_readme_test_command():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert f"`{name}`" in README or f"difffit-screen {name}" in README, name
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "make test" in README and "make test" in ci
