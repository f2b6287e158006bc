"""The manifest (one row per candidate) and the failures table of a fetch."""

from __future__ import annotations

import logging
import os

import pyarrow as pa

from ..outputs import UniqueNames
from ..tables import FAILURES_SCHEMA, SCHEMA_VERSION, table_from_rows, write_table
from .context import FetchResult

__all__ = ["MANIFEST_SCHEMA", "unique_candidates", "write_fetch_outputs"]

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = pa.schema(
    [pa.field("candidate", pa.string(), nullable=False),
     pa.field("source_kind", pa.string()),
     pa.field("accession", pa.string()),
     pa.field("version", pa.string()),
     pa.field("path", pa.string()),
     pa.field("url", pa.string()),
     pa.field("sha256", pa.string()),
     pa.field("pae_path", pa.string()),
     pa.field("chain", pa.string()),
     pa.field("n_bytes", pa.int64()),
     pa.field("name", pa.string()),
     pa.field("gene", pa.string()),
     pa.field("organism", pa.string()),
     pa.field("taxid", pa.int64()),
     pa.field("entry_url", pa.string())],
    metadata={"difffit_screen.table": "manifest",
              "difffit_screen.schema_version": SCHEMA_VERSION},
)


def unique_candidates(rows: list[dict]) -> list[dict]:
    """Rows with repeated candidate ids renamed ``<id>_2``, ``<id>_3`` ... (a warning each).

    Renaming is :class:`~difffit_screen.outputs.UniqueNames`: a new id never collides with an
    id given before or after it (``a, a, a_2`` become ``a, a_2, a_2_2``).
    """
    unique = UniqueNames()
    for row in rows:
        name = row["candidate"]
        new = unique(name)
        if new != name:
            log.warning("candidate id %s repeats (%s); renamed %s", name, row["path"], new)
            row["candidate"] = new
    return rows


def write_fetch_outputs(result: FetchResult, manifest: str | os.PathLike,
                        failures: str | os.PathLike) -> None:
    """Write the manifest and failures Parquet tables."""
    write_table(table_from_rows(result.rows, MANIFEST_SCHEMA), manifest)
    write_table(table_from_rows(result.failures, FAILURES_SCHEMA), failures)
