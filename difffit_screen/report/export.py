"""The top hits posed in the map frame: read from their source (a structure file or a library
shard), written as mmCIF under ``report/models/``.

Posed models come from the ranking's ``source`` and ``matrix`` columns (``matrix`` maps the
candidate's input coordinates to the map frame, see :mod:`difffit_screen`); ``source`` is a
structure file, or ``<shard.parquet>::<candidate>`` for a candidate of the library store. A
candidate whose source cannot be read keeps its error message instead of a model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import InputError
from ..outputs import atomic_write, safe_name
from ..structures import Atoms, apply_matrix, read_structure, select_residue_ranges, write_structure
from .results import resolve_path

__all__ = ["MODELS_DIR", "RANK_COLOURS", "HitExport", "export_top_hits", "load_candidate_atoms",
           "rank_colour", "trace_mask"]

log = logging.getLogger(__name__)

MODELS_DIR = "models"
"""Folder of the report holding the posed top hits (``rank<r>_<candidate>.cif``)."""

RANK_COLOURS = ("orangered", "dodgerblue", "limegreen", "gold", "orchid", "darkorange",
                "turquoise", "sienna", "hotpink", "slategray", "yellowgreen", "mediumpurple")
"""Colours of the top hits by rank (CSS / ChimeraX / matplotlib names, cycled)."""


@dataclass
class HitExport:
    """One exported top hit: its ranking row, posed atoms and file, or the error.

    Attributes
    ----------
    row : dict
        The ranking row (names filled in from the model's file when the ranking has none).
    colour : str
        The hit's rank colour (:data:`RANK_COLOURS`).
    xyz, trace : np.ndarray or None
        ``(N, 3)`` posed coordinates (map frame, Å) and ``(M, 3)`` those of its trace.
    atoms : Atoms or None
        The candidate in its input frame.
    model_path : Path or None
        The mmCIF written.
    error : str or None
        Why the hit could not be exported.
    """

    row: dict
    colour: str
    xyz: np.ndarray | None = None
    trace: np.ndarray | None = None
    atoms: Atoms | None = None
    model_path: Path | None = None
    error: str | None = None


def rank_colour(index: int) -> str:
    """The colour of the hit at 0-based position ``index`` of the ranking."""
    return RANK_COLOURS[index % len(RANK_COLOURS)]


def model_file_name(row: dict, suffix: str) -> str:
    """``rank<r>_<candidate><suffix>``: the file name of a top hit's model or picture."""
    return f"rank{row['rank']}_{safe_name(row['candidate'])}{suffix}"


def load_candidate_atoms(row: dict, base: Path | None = None,
                         shard_cache: dict | None = None) -> Atoms:
    """Read the candidate of a ranking ``row`` from its ``source`` (input frame).

    ``source`` is a structure file, or ``<shard.parquet>::<candidate>`` for the library store
    (read with :func:`difffit_screen.store.read_shard`). A domain read from a structure file is
    cut to its ``residue_ranges``.

    Raises
    ------
    InputError
        The source is missing, unreadable, or does not hold the candidate.
    """
    source = row.get("source") or ""
    name = row["candidate"]
    if not source:
        raise InputError(f"{name}: no source recorded")
    if "::" in source:
        shard, _, member = source.rpartition("::")
        return load_store_candidate(shard, member or name, base, shard_cache)
    path = resolve_path(source, base)
    if path is None:
        raise InputError(f"{source}: structure file not found")
    atoms = read_structure(path, name=name)
    if row.get("residue_ranges"):
        atoms = select_residue_ranges(atoms, row["residue_ranges"])
        if len(atoms) == 0:
            raise InputError(f"{source}: no atoms in residue ranges {row['residue_ranges']}")
    return atoms


def load_store_candidate(shard: str, member: str, base: Path | None,
                         shard_cache: dict | None) -> Atoms:
    """Return candidate ``member`` of library shard ``shard`` (read once per shard)."""
    path = resolve_path(shard, base)
    if path is None:
        raise InputError(f"{shard}: library shard not found")
    cache = shard_cache if shard_cache is not None else {}
    if path not in cache:
        try:
            from ..store import read_shard
        except ImportError as exc:
            raise InputError(f"{shard}: cannot read library shards ({exc})") from None
        try:
            cache[path] = {a.name: a for a in read_shard(path)}
        except InputError:
            raise
        except Exception as exc:  # a corrupt shard must not stop the report
            raise InputError(f"{shard}: cannot read library shard ({exc})") from None
    if member not in cache[path]:
        raise InputError(f"{shard}: no candidate {member!r} in the shard")
    return cache[path][member]


def export_top_hits(ranking: pa.Table, out_dir: Path, top: int,
                    base: Path | None = None) -> list[HitExport]:
    """Write the ``top`` best candidates as mmCIF in the map frame under ``out_dir/models``.

    Returns one :class:`HitExport` per top candidate, in rank order, with the error message for
    those that could not be read or have no pose.
    """
    models = out_dir / MODELS_DIR
    models.mkdir(parents=True, exist_ok=True)
    shard_cache: dict = {}
    exports = []
    for i, row in enumerate(ranking.slice(0, top).to_pylist()):
        hit = HitExport(row, rank_colour(i))
        try:
            export_hit(hit, models, base, shard_cache)
        except (InputError, OSError, ValueError, RuntimeError) as exc:
            hit.error = str(exc)
            log.warning("report: cannot export %s: %s", row["candidate"], exc)
        exports.append(hit)
    return exports


def export_hit(hit: HitExport, models: Path, base: Path | None, shard_cache: dict) -> None:
    """Read ``hit``'s candidate, write it posed into ``models`` and fill in ``hit``.

    Raises
    ------
    InputError
        The ranking row has no pose, or its source cannot be read.
    """
    row = hit.row
    if row.get("matrix") is None:
        raise InputError(f"{row['candidate']}: no pose in the ranking")
    atoms = load_candidate_atoms(row, base, shard_cache)
    matrix = np.asarray(row["matrix"], float)
    path = models / model_file_name(row, ".cif")
    with atomic_write(path) as tmp:
        write_structure(atoms, tmp, matrix)
    hit.xyz = apply_matrix(atoms.xyz, matrix)
    hit.trace = hit.xyz[trace_mask(atoms)]
    hit.atoms = atoms
    fill_missing_names(hit.row, atoms)
    hit.model_path = path


def fill_missing_names(row: dict, atoms: Atoms) -> None:
    """Give a ranking row without names (a screen fitted before names were carried) those of its
    candidate's file header or store entry."""
    from ..annotations import row_annotation

    if row.get("name") or row.get("url"):
        return
    row.update((k, v) for k, v in row_annotation(atoms.meta).items() if v is not None)


def trace_mask(atoms: Atoms) -> np.ndarray:
    """Atoms of the model's trace: CA of amino acids and P of nucleotides (all atoms if fewer
    than 3 of those)."""
    mask = atoms.polymer & np.isin(atoms.atom_name, ["CA", "P"])
    return mask if mask.sum() >= 3 else np.ones(len(atoms), bool)
