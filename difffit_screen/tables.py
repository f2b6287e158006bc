"""Parquet result tables: explicit pyarrow schemas, writing, reading and aggregation.

Three tables, readable by pandas, polars and duckdb alike:

- ``fits``: one row per pose cluster per candidate (``FITS_SCHEMA``);
- ``ranking``: one row per candidate, its best cluster, best candidate first (``RANKING_SCHEMA``);
- ``failures``: one row per candidate that could not be fitted, with the reason
  (``FAILURES_SCHEMA``).

Poses follow the package conventions: ``matrix`` is the row-major 3x4 ``[R | t]`` mapping the
candidate's input coordinates to the map frame; ``quat_xyzw`` is ``R`` as a scalar-last unit
quaternion; ``translation`` is ``t``; ``centroid_xyz`` is where the fitted candidate's centroid
(of the fitted atom set) lies in the map frame.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import InputError

SCHEMA_VERSION = "1"

_POSE_AND_SCORES = [
    pa.field("candidate", pa.string(), nullable=False),
    pa.field("cluster_rank", pa.int32(), nullable=False),
    pa.field("hits", pa.int32(), nullable=False),
    pa.field("n_starts", pa.int32()),
    pa.field("score", pa.float32()),
    pa.field("footprint_cc", pa.float32()),
    pa.field("local_cc", pa.float32()),
    pa.field("mean_density", pa.float32()),
    pa.field("overlap", pa.float32()),
    pa.field("correlation", pa.float32()),
    pa.field("cam", pa.float32()),
    pa.field("inside_fraction", pa.float32()),
    pa.field("search_loss", pa.float32()),
    pa.field("refine_shift", pa.float32()),
    pa.field("fit_ok", pa.bool_()),
    pa.field("quat_xyzw", pa.list_(pa.float32(), 4)),
    pa.field("translation", pa.list_(pa.float64(), 3)),
    pa.field("centroid_xyz", pa.list_(pa.float64(), 3)),
    pa.field("matrix", pa.list_(pa.float64(), 12)),
    pa.field("n_atoms", pa.int32()),
    pa.field("n_residues", pa.int32()),
    pa.field("confident_fraction", pa.float32()),
    pa.field("seed", pa.int64()),
    pa.field("source", pa.string()),
    pa.field("accession", pa.string()),
    pa.field("parent", pa.string()),
    pa.field("residue_ranges", pa.string()),
    pa.field("name", pa.string()),
    pa.field("gene", pa.string()),
    pa.field("organism", pa.string()),
    pa.field("taxid", pa.int64()),
    pa.field("url", pa.string()),
    pa.field("model_path", pa.string()),
]

FIELD_DOCS = {
    "candidate": "candidate id (file stem, or <accession>_D<n> for a domain)",
    "cluster_rank": "rank of this pose cluster within its candidate (1 = best)",
    "hits": "number of search placements that converged into this cluster (3 Å / 6°)",
    "n_starts": "start placements searched for this candidate (positions x rotations, more "
                "after a deeper search)",
    "score": "the ranking score: local_cc (default, --map-kind whole) or footprint_cc "
             "(--map-kind segment) of the fit",
    "footprint_cc": "correlation about the mean between the map and the candidate's simulated "
                    "map over the union of the map's footprint and the candidate's envelope "
                    "(the ranking score of a segment map)",
    "local_cc": "correlation about the mean between the map and the candidate's simulated map "
                "over the candidate's envelope and a shell around it (the ranking score of a "
                "whole map)",
    "mean_density": "mean raw map value at the fitted atoms (ChimeraX 'average map value')",
    "overlap": "paper's mean overlap D·W/N (D: normalised thresholded map, W: simulated weights)",
    "correlation": "paper's correlation D·W/(|D||W|) over the fitted atoms",
    "cam": "paper's correlation about the mean of D and W over the fitted atoms",
    "inside_fraction": "fraction of fitted atoms at or above the map threshold",
    "search_loss": "final loss of the best search placement of the cluster (smoothed map)",
    "refine_shift": "RMSD (Å) between the search pose and the refined pose",
    "fit_ok": "inside_fraction >= min_inside (otherwise reported as 'no fit')",
    "quat_xyzw": "rotation of the pose, unit quaternion, scalar last",
    "translation": "t of the pose matrix, Å",
    "centroid_xyz": "fitted centroid of the fitted atom set in the map frame, Å",
    "matrix": "pose, row-major 3x4 [R | t]: input coordinates -> map frame",
    "n_atoms": "atoms in the fitted atom set",
    "n_residues": "residues in the candidate",
    "confident_fraction": "predicted models: fraction of residues with pLDDT >= 50 (below 0.5: "
                          "mostly predicted disorder, never significant); null otherwise",
    "seed": "seed of the search's random choices",
    "source": "file or store reference the candidate came from",
    "accession": "database accession (UniProt / PDB) when known",
    "parent": "parent model of a domain candidate",
    "residue_ranges": "residue ranges of a domain candidate, e.g. 'A:1-133,A:409-523'",
    "name": "protein name (description) from the AlphaFold DB API or the file's header; a "
            "domain keeps its parent's",
    "gene": "gene name when known",
    "organism": "source organism (scientific name) when known",
    "taxid": "NCBI taxonomy id of the organism when known",
    "url": "the candidate's page: AlphaFold DB entry, RCSB structure or UniProt entry",
    "model_path": "fitted model (mmCIF, map frame) when written",
}


def _schema(fields: Sequence[pa.Field], name: str) -> pa.Schema:
    return pa.schema(fields, metadata={"difffit_screen.table": name,
                                       "difffit_screen.schema_version": SCHEMA_VERSION})


FITS_SCHEMA = _schema(_POSE_AND_SCORES, "fits")

RANKING_SCHEMA = _schema(
    [pa.field("rank", pa.int32(), nullable=False),
     *_POSE_AND_SCORES,
     pa.field("n_clusters", pa.int32()),
     pa.field("zscore", pa.float64()),
     pa.field("pvalue", pa.float64()),
     pa.field("qvalue", pa.float64())],
    "ranking",
)
FIELD_DOCS.update({
    "rank": "rank of the candidate in the screen (1 = best)",
    "n_clusters": "number of pose clusters found for the candidate",
    "zscore": "Fisher-z score minus its size window's null location, over the null's spread",
    "pvalue": "one-sided p-value under the candidate's size-window null (Gumbel upper tail), "
              "floored at what the library size supports; 1 for fits that are not fit_ok, have "
              "< 30 % of atoms inside the contour, or are predicted models with "
              "confident_fraction < 0.5",
    "qvalue": "Benjamini-Hochberg adjusted p-value across the screen",
})

FAILURES_SCHEMA = _schema(
    [pa.field("candidate", pa.string(), nullable=False),
     pa.field("source", pa.string()),
     pa.field("stage", pa.string()),
     pa.field("reason", pa.string())],
    "failures",
)


def table_from_rows(rows: Iterable[dict], schema: pa.Schema) -> pa.Table:
    """Build a table with ``schema`` from dict rows; missing keys become nulls."""
    rows = list(rows)
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    arrays = []
    for f in schema:
        values = cols[f.name]
        if pa.types.is_fixed_size_list(f.type):
            values = [None if v is None else [float(x) for x in np.asarray(v).ravel()]
                      for v in values]
        arrays.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_table(table: pa.Table, path: str | os.PathLike) -> Path:
    """Write a table as zstd Parquet, atomically (:func:`~difffit_screen.outputs.atomic_write`)."""
    from .outputs import atomic_write

    with atomic_write(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


def read_table(path: str | os.PathLike, schema: pa.Schema | None = None) -> pa.Table:
    """Read a Parquet table, cast to ``schema`` when given.

    Raises
    ------
    InputError
        The file is missing, not Parquet, corrupt, or its columns cannot be cast to ``schema``
        (one line naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: table not found" if not path.exists()
                         else f"{path}: not a file")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # ArrowInvalid, OSError, ...: a corrupt or foreign file
        raise InputError(f"{path}: not a readable Parquet table ({_first_line(exc)})") from None
    if schema is not None:
        try:
            table = conform(table, schema)
        except Exception as exc:  # ArrowInvalid, ArrowNotImplementedError, TypeError
            name = (schema.metadata or {}).get(b"difffit_screen.table", b"expected").decode()
            raise InputError(f"{path}: columns do not match the {name} table "
                             f"({_first_line(exc)})") from None
    return table


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Return ``table`` with exactly ``schema``'s columns (missing ones null), cast to it."""
    arrays = []
    for f in schema:
        if f.name in table.column_names:
            arrays.append(table.column(f.name).cast(f.type))
        else:
            arrays.append(pa.nulls(table.num_rows, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def rank_candidates(fits: pa.Table) -> pa.Table:
    """One row per candidate (its best cluster), best first, as ``RANKING_SCHEMA``.

    Candidates whose best fit is ``fit_ok`` come first, ordered by ``score`` (descending), then by
    ``hits``; candidates with no acceptable fit follow, in the same order.
    Significance columns are left null (see :mod:`difffit_screen.significance`).
    """
    fits = conform(fits, FITS_SCHEMA)
    if fits.num_rows == 0:
        return RANKING_SCHEMA.empty_table()
    rows = fits.to_pylist()
    best: dict[str, dict] = {}
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["candidate"]] = counts.get(r["candidate"], 0) + 1
        current = best.get(r["candidate"])
        if current is None or r["cluster_rank"] < current["cluster_rank"]:
            best[r["candidate"]] = r

    def key(r: dict) -> tuple:
        score = r["score"] if r["score"] is not None and np.isfinite(r["score"]) else -np.inf
        return (not bool(r["fit_ok"]), -score, -(r["hits"] or 0), r["candidate"])

    ordered = sorted(best.values(), key=key)
    for i, r in enumerate(ordered, start=1):
        r["rank"] = i
        r["n_clusters"] = counts[r["candidate"]]
    return table_from_rows(ordered, RANKING_SCHEMA)


def concat_tables(paths: Iterable[str | os.PathLike], schema: pa.Schema) -> pa.Table:
    """Concatenate Parquet files conformed to ``schema`` (an empty table if there are none)."""
    tables = [read_table(p, schema) for p in paths]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


SHARD_NAME = re.compile(r"^(\d+)-of-(\d+)$")
SHARD_FILES = ("fits.parquet", "failures.parquet")
RUN_SETTINGS_IGNORED = ("device", "max_samples", "bucket_window", "models")
"""Fit parameters that may differ between the shards of one screen (they change where and in
what batches it runs, or how many model files it writes, not the fits)."""
MAP_SETTINGS = ("sha256", "threshold", "resolution", "sigmas", "weights", "negative")
"""The map settings recorded in ``run.json`` that every shard of a screen must share."""


def check_shard_dirs(dirs: Sequence[Path], expect: int | None = None,
                     out: Path | None = None) -> list[dict]:
    """Refuse an incomplete or inconsistent set of shard folders; return their run records.

    Every folder must exist, hold :data:`SHARD_FILES` and a finished run's ``run.json``
    (:func:`~difffit_screen.outputs.read_run_record`), and be given once; with ``expect`` there
    must be that many folders; folders named ``<i>-of-<N>`` must share ``N`` and be all ``N``
    of them, each index once; every shard must have been fitted into the same map
    (:data:`MAP_SETTINGS`, the map file's sha256 included) with the same fit parameters (but
    :data:`RUN_SETTINGS_IGNORED`); ``out`` must be neither a shard folder nor inside one.

    Raises
    ------
    InputError
        One line naming the missing, unfinished, repeated or inconsistent shard folder(s).
    """
    from .outputs import read_run_record

    if expect is not None and len(dirs) != expect:
        raise InputError(f"aggregate expects {expect} shard folder(s) (--expect) but was "
                         f"given {len(dirs)}")
    seen: dict[Path, Path] = {}
    for d in dirs:
        if d.resolve() in seen:
            raise InputError(f"shard folder {d} is given twice"
                             + (f" (as {seen[d.resolve()]})" if seen[d.resolve()] != d else ""))
        seen[d.resolve()] = d
    if out is not None:
        target = out.resolve()
        for d in dirs:
            if target == d.resolve() or d.resolve() in target.parents:
                raise InputError(f"--out {out}: is {'the' if target == d.resolve() else 'inside'}"
                                 f" shard folder {d}: its results would overwrite the shard's")
    bad = []
    for d in dirs:
        if not d.is_dir():
            bad.append(f"{d} (missing)")
        else:
            lacking = [f for f in SHARD_FILES if not (d / f).is_file()]
            if lacking:
                bad.append(f"{d} (no {' or '.join(lacking)}: empty or unfinished shard)")
    if bad:
        raise InputError(f"{len(bad)} of {len(dirs)} shard folder(s) cannot be aggregated: "
                         + "; ".join(bad))
    _check_shard_names(dirs)
    records = [read_run_record(d, "shard") for d in dirs]
    _check_same_settings(dirs, records)
    return records


def _check_shard_names(dirs: Sequence[Path]) -> None:
    """Folders named ``<i>-of-<N>``: one ``N``, every index once, none missing."""
    named = [(d, SHARD_NAME.match(d.name)) for d in dirs]
    named = [(d, int(m.group(1)), int(m.group(2))) for d, m in named if m]
    if not named:
        return
    totals = sorted({n for _, _, n in named})
    if len(totals) > 1:
        examples = ", ".join(next(str(d) for d, _, n in named if n == t) for t in totals)
        counts = " and ".join(map(str, totals))
        raise InputError(f"shard folders of different shard counts ({counts}: {examples}): "
                         f"they are not one screen's shards")
    by_index: dict[int, Path] = {}
    for d, i, _n in named:
        if i in by_index:
            raise InputError(f"shard index {d.name} is given twice: {by_index[i]} and {d}")
        by_index[i] = d
    if len(named) == len(dirs):
        n = totals[0]
        base = 0 if 0 in by_index else 1
        absent = sorted(set(range(base, base + n)) - set(by_index))
        if absent:
            raise InputError("shard folder(s) missing: " + ", ".join(
                f"{i}-of-{n}" for i in absent) + f" (given {len(dirs)} of {n})")


def run_settings(record: dict) -> dict:
    """The settings of a fit run that decide its results: the map's (:data:`MAP_SETTINGS`,
    as ``map.<key>``) and the fit parameters (``params.<key>``, but
    :data:`RUN_SETTINGS_IGNORED`), from its ``run.json`` record."""
    settings = {"command": record.get("command")}
    map_record = record.get("map") if isinstance(record.get("map"), dict) else {}
    settings.update({f"map.{k}": map_record.get(k) for k in MAP_SETTINGS})
    params = record.get("params") if isinstance(record.get("params"), dict) else {}
    settings.update({f"params.{k}": v for k, v in sorted(params.items())
                     if k not in RUN_SETTINGS_IGNORED})
    return settings


def _check_same_settings(dirs: Sequence[Path], records: Sequence[dict]) -> None:
    """Refuse shards fitted into another map or with other parameters than the first."""
    first = run_settings(records[0])
    for d, record in zip(dirs[1:], records[1:], strict=True):
        other = run_settings(record)
        differ = [k for k in sorted(set(first) | set(other)) if first.get(k) != other.get(k)]
        if differ:
            k = differ[0]
            more = f" and {len(differ) - 1} more setting(s)" if len(differ) > 1 else ""
            raise InputError(f"shard {d} was fitted with other settings than {dirs[0]}: {k} "
                             f"{_short(other.get(k))} vs {_short(first.get(k))}{more}; the "
                             f"shards of one ranking must share the map and the fit settings")


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:12] + "..."


def aggregate_results(shard_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                      extra_failures: Sequence[str | os.PathLike] = (),
                      expect: int | None = None) -> dict[str, Path]:
    """Merge per-shard results into one screen's ``fits``, ``ranking`` and ``failures`` tables.

    Each shard folder holds ``fits.parquet``, ``failures.parquet`` and a finished run's
    ``run.json`` (checked by :func:`check_shard_dirs`); ``extra_failures`` are failure tables
    of earlier stages (fetch, pack). The ranking gets the significance columns
    (:func:`difffit_screen.significance.add_significance`). The shards' ``run.json`` records
    are merged into ``out_dir/run.json`` (parameters of the first shard, inputs and timings of
    all), written last; ``out_dir`` is locked meanwhile
    (:func:`~difffit_screen.outputs.lock_output_dir`).
    """
    import json

    from .outputs import lock_output_dir, prepare_output_dir, write_text

    out = Path(out_dir)
    dirs = [Path(d) for d in shard_dirs]
    records = check_shard_dirs(dirs, expect, out)
    missing = [str(p) for p in extra_failures if not Path(p).is_file()]
    if missing:
        raise InputError(f"failure table(s) not found: {', '.join(missing)}")
    fits = concat_tables([d / "fits.parquet" for d in dirs], FITS_SCHEMA)
    failures = concat_tables([d / "failures.parquet" for d in dirs]
                             + [Path(p) for p in extra_failures], FAILURES_SCHEMA)
    ranking = rank_candidates(fits)
    from .significance import add_significance, read_null_summary

    ranking = add_significance(ranking)
    prepare_output_dir(out)
    with lock_output_dir(out):
        (out / "run.json").unlink(missing_ok=True)  # the folder is unfinished until written
        paths = {"fits": write_table(fits, out / "fits.parquet"),
                 "ranking": write_table(ranking, out / "ranking.parquet"),
                 "failures": write_table(failures, out / "failures.parquet")}
        merged = dict(records[0])
        merged["command"] = "aggregate"
        merged["shards"] = [str(d) for d in dirs]
        merged["inputs"] = [i for r in records for i in r.get("inputs", [])]
        merged["n_candidates"] = sum(r.get("n_candidates", 0) for r in records)
        merged["n_failures"] = failures.num_rows
        merged["warnings"] = [w for r in records for w in r.get("warnings", [])]
        merged["significance"] = read_null_summary(ranking)
        per = {k: v for r in records for k, v in r.get("timing", {}).get("per_candidate_s",
                                                                         {}).items()}
        search_s = sum(r.get("timing", {}).get("search_s", 0.0) for r in records)
        samples = sum(r.get("timing", {}).get("search_samples", 0) for r in records)
        merged["timing"] = {"total_s": sum(r.get("timing", {}).get("total_s", 0.0)
                                           for r in records),
                            "search_s": search_s, "per_candidate_s": per,
                            "search_samples": samples,
                            "samples_per_s": samples / max(search_s, 1e-9)}
        merged["complete"] = True
        write_text(out / "run.json", json.dumps(merged, indent=2))
        paths["run"] = out / "run.json"
    return paths
