"""A screen's results folder as the report reads it: the ranking, failures and ``run.json``."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import InputError
from ..tables import FAILURES_SCHEMA, RANKING_SCHEMA, read_table

__all__ = ["Q_HIT", "Results", "find_run_value", "read_results", "read_run_json", "resolve_path",
           "sort_by_rank"]

log = logging.getLogger(__name__)

Q_HIT = 0.05
"""q-value below which a candidate is called a hit in the report's plots, summary and table."""


@dataclass
class Results:
    """A screen's outputs as read from its results folder.

    Attributes
    ----------
    folder : Path
        The results folder.
    ranking, failures : pa.Table
        ``ranking.parquet`` (sorted by rank) and ``failures.parquet`` (empty when absent).
    run : dict or None
        ``run.json``.
    files : dict
        Name → path of each file read (the report lists their checksums).
    """

    folder: Path
    ranking: pa.Table
    failures: pa.Table
    run: dict | None
    files: dict = field(default_factory=dict)


def read_results(folder: str | os.PathLike, require_run: bool = False) -> Results:
    """Read a results folder; the ranking is required, the rest optional (with ``require_run``
    a finished run's ``run.json`` too: :func:`~difffit_screen.outputs.read_run_record`).

    Significance columns left null in the ranking are filled with
    :func:`difffit_screen.significance.add_significance`.

    Raises
    ------
    InputError
        ``folder`` holds no ``ranking.parquet`` (or, with ``require_run``, no finished run's
        ``run.json``: a run killed after its tables).
    """
    from ..outputs import read_run_record
    from ..significance import add_significance

    folder = Path(folder)
    ranking_path = folder / "ranking.parquet"
    if not ranking_path.exists():
        raise InputError(f"{ranking_path}: ranking not found (is {folder} a results folder?)")
    ranking = read_table(ranking_path, RANKING_SCHEMA)
    if ranking.num_rows and ranking.column("pvalue").null_count == ranking.num_rows:
        ranking = add_significance(ranking)
    ranking = sort_by_rank(ranking)
    files = {"ranking.parquet": ranking_path}
    failures = FAILURES_SCHEMA.empty_table()
    if (folder / "failures.parquet").exists():
        failures = read_table(folder / "failures.parquet", FAILURES_SCHEMA)
        files["failures.parquet"] = folder / "failures.parquet"
    if (folder / "fits.parquet").exists():
        files["fits.parquet"] = folder / "fits.parquet"
    run = read_run_record(folder) if require_run else read_run_json(folder / "run.json")
    if run is not None:
        files["run.json"] = folder / "run.json"
    return Results(folder, ranking, failures, run, files)


def sort_by_rank(ranking: pa.Table) -> pa.Table:
    """Return the ranking ordered by its ``rank`` column (rows without a rank last)."""
    if ranking.num_rows == 0:
        return ranking
    ranks = [r if r is not None else 1 << 30 for r in ranking.column("rank").to_pylist()]
    return ranking.take(pa.array(np.argsort(ranks, kind="stable")))


def read_run_json(path: Path) -> dict | None:
    """Return the parsed ``run.json`` or None when absent or unreadable (logged)."""
    if not path.exists():
        return None
    try:
        run = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("%s: cannot read run record (%s); reporting without it", path, exc)
        return None
    return run if isinstance(run, dict) else {"run": run}


def find_run_value(run: dict | None, *keys: str):
    """Return the first of ``keys`` found at the top level or in a nested dict of ``run``."""
    if not run:
        return None
    for key in keys:
        if run.get(key) is not None:
            return run[key]
    for value in run.values():
        if isinstance(value, dict):
            for key in keys:
                if value.get(key) is not None:
                    return value[key]
    return None


def resolve_path(path: str, base: Path | None = None) -> Path | None:
    """Return ``path`` if it exists, else relative to ``base`` or its parent; None if nowhere."""
    candidates = [Path(path)]
    if base is not None and not Path(path).is_absolute():
        candidates += [base / path, base.parent / path]
    for c in candidates:
        if c.exists():
            return c
    return None
