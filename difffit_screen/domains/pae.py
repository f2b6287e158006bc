"""Predicted aligned error (PAE) files: reading the JSON layouts, finding a model's file."""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["MODEL_NAME", "PAE_NAME", "find_pae_file", "read_pae"]

PAE_NAME = re.compile(r"^AF-(?P<acc>[^-]+)-F(?P<frag>\d+)-predicted_aligned_error(_v\d+)?\.json$")
MODEL_NAME = re.compile(r"^AF-(?P<acc>[^-]+)-F\d+-model(_v\d+)?$")


def read_pae(path: str | os.PathLike) -> np.ndarray:
    """Read a predicted-aligned-error matrix from JSON (optionally ``.gz``).

    Layouts understood:

    - AlphaFold DB v1/v2: ``[{"residue1": [...], "residue2": [...], "distance": [...],
      "max_predicted_aligned_error": m}]``, flat arrays over all pairs, residues numbered from 1;
    - AlphaFold DB v3 and later: ``[{"predicted_aligned_error": [[...], ...],
      "max_predicted_aligned_error": m}]``;
    - a bare dict with ``predicted_aligned_error`` (AlphaFold DB v3+ without the list, ColabFold
      ``*_scores*.json``) or ``pae`` (ColabFold, AlphaFold 3 ``*_full_data*.json``).

    Returns
    -------
    np.ndarray
        ``(R, R)`` float32 PAE in Å; row ``i``, column ``j`` is the expected error at residue
        ``j`` when aligned on residue ``i``.

    Raises
    ------
    InputError
        If the file is missing, not JSON, or holds none of these layouts or a non-square matrix.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: PAE file not found")
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read PAE JSON ({exc})") from None
    if isinstance(data, list):
        if not data or not isinstance(data[0], dict):
            raise InputError(f"{path}: PAE JSON list does not hold a dict")
        data = data[0]
    if not isinstance(data, dict):
        raise InputError(f"{path}: PAE JSON is neither a list nor a dict")
    pae = _pae_from_dict(data, path)
    if pae.ndim != 2 or pae.shape[0] != pae.shape[1] or pae.shape[0] == 0:
        raise InputError(f"{path}: PAE matrix is not square (shape {pae.shape})")
    if not np.all(np.isfinite(pae)):
        raise InputError(f"{path}: PAE matrix holds non-finite values")
    return pae


def _pae_from_dict(data: dict, path: Path) -> np.ndarray:
    for key in ("predicted_aligned_error", "pae"):
        if key in data:
            return np.asarray(data[key], dtype=np.float32)
    if {"residue1", "residue2", "distance"} <= data.keys():
        r1 = np.asarray(data["residue1"], dtype=np.int64) - 1
        r2 = np.asarray(data["residue2"], dtype=np.int64) - 1
        d = np.asarray(data["distance"], dtype=np.float32)
        if not (r1.shape == r2.shape == d.shape) or r1.size == 0 or min(r1.min(), r2.min()) < 0:
            raise InputError(f"{path}: PAE residue1/residue2/distance arrays do not match")
        n = int(max(r1.max(), r2.max())) + 1
        pae = np.full((n, n), np.nan, dtype=np.float32)
        pae[r1, r2] = d
        return pae
    raise InputError(f"{path}: no PAE matrix (keys {sorted(data)[:6]})")


def find_pae_file(pae_dir: str | os.PathLike, name: str, accession: str | None = None
                  ) -> Path | None:
    """Find the PAE JSON of model ``name`` (or ``accession``) in ``pae_dir``.

    Tries ``<name>.json``, ``<name>_pae.json``, the AlphaFold DB name
    ``AF-<acc>-F1-predicted_aligned_error_v<N>.json`` (highest ``N`` first; ``acc`` is
    ``accession``, else the accession in an ``AF-<acc>-F1-model_v<N>`` name, else ``name``), each
    also gzipped.
    """
    pae_dir = Path(pae_dir)
    m = MODEL_NAME.match(name)
    acc = accession or (m.group("acc") if m else name)
    for stem in (name, f"{name}_pae", f"{name}.pae", acc, f"{acc}_pae"):
        for suffix in (".json", ".json.gz"):
            if (pae_dir / f"{stem}{suffix}").is_file():
                return pae_dir / f"{stem}{suffix}"
    hits = sorted(pae_dir.glob(f"AF-{acc}-F1-predicted_aligned_error*.json*"),
                  key=lambda p: _version_of(p.name), reverse=True)
    return hits[0] if hits else None


def _version_of(filename: str) -> int:
    m = re.search(r"_v(\d+)\.json", filename)
    return int(m.group(1)) if m else 0
