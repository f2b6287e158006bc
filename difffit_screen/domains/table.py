"""The ``domains.parquet`` table (one row per domain) and the summary of a ``domains`` run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..outputs import atomic_write
from ..structures import Atoms

__all__ = ["TABLE_COLUMNS", "domain_row", "format_summary", "summarize_domains",
           "write_domain_table"]

TABLE_COLUMNS = ("name", "parent", "accession", "domain_index", "n_domains", "residue_ranges",
                 "n_residues", "n_atoms", "n_segments", "n_pieces", "mean_plddt", "compactness",
                 "method", "plddt_min", "pae_file", "source", "path")


def domain_row(dom: Atoms, path: str = "", pae_file: str = "") -> dict:
    """One ``domains.parquet`` row (see :data:`TABLE_COLUMNS`) for domain ``dom``."""
    meta = dom.meta
    ranges = meta.get("residue_ranges", "")
    return {
        "name": dom.name, "parent": meta.get("parent", ""),
        "accession": str(meta.get("accession") or ""),
        "domain_index": int(meta.get("domain_index", 0)),
        "n_domains": int(meta.get("n_domains", 0)), "residue_ranges": ranges,
        "n_residues": int(meta.get("n_residues", 0)), "n_atoms": len(dom),
        "n_segments": len(ranges.split(",")) if ranges else 0,
        "n_pieces": int(meta.get("n_pieces", 0)),
        "mean_plddt": float(meta.get("mean_plddt", np.nan)),
        "compactness": float(meta.get("compactness", np.nan)),
        "method": meta.get("method", ""),
        "plddt_min": float(meta["plddt_min"]) if meta.get("plddt_min") is not None else np.nan,
        "pae_file": pae_file, "source": dom.source, "path": path,
    }


def write_domain_table(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write domain rows to Parquet with the columns of :data:`TABLE_COLUMNS`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    cols = {c: [r[c] for r in rows] for c in TABLE_COLUMNS}
    int_cols = {"domain_index", "n_domains", "n_residues", "n_atoms", "n_segments", "n_pieces"}
    float_cols = {"mean_plddt", "compactness", "plddt_min"}
    arrays = {c: pa.array(v, type=pa.int64() if c in int_cols else
                          pa.float64() if c in float_cols else pa.string())
              for c, v in cols.items()}
    with atomic_write(path) as tmp:
        pq.write_table(pa.table(arrays), tmp)
    return path


def summarize_domains(n_models: int, per_model: list[int], sizes: list[int],
                      n_failed: int = 0) -> dict:
    """Summary statistics: models, domains, domain sizes and a domains-per-model histogram."""
    sizes_a = np.asarray(sizes, dtype=np.int64)
    hist = np.bincount(np.asarray(per_model, dtype=np.int64)) if per_model else np.zeros(1, int)
    return {
        "models": int(n_models), "failed": int(n_failed), "domains": int(sizes_a.size),
        "size_min": int(sizes_a.min()) if sizes_a.size else 0,
        "size_median": float(np.median(sizes_a)) if sizes_a.size else 0.0,
        "size_max": int(sizes_a.max()) if sizes_a.size else 0,
        "size_quartiles": [float(q) for q in np.percentile(sizes_a, [25, 75])]
        if sizes_a.size else [0.0, 0.0],
        "domains_per_model": {str(k): int(v) for k, v in enumerate(hist) if v},
    }


def format_summary(summary: dict) -> str:
    """Human-readable lines of :func:`summarize_domains` output."""
    hist = ", ".join(f"{k}: {v}" for k, v in summary["domains_per_model"].items())
    return (f"models: {summary['models']} ({summary['failed']} failed)\n"
            f"domains: {summary['domains']}; residues per domain min {summary['size_min']}, "
            f"median {summary['size_median']:g}, max {summary['size_max']}\n"
            f"domains per model (count: models): {hist}")
