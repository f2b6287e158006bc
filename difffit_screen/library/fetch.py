"""Fetching a whole library spec: AFDB, PDB and local sources, concurrently, in spec order."""

from __future__ import annotations

import logging
import os
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import InputError
from .afdb import afdb_accessions, fetch_afdb_archive, fetch_afdb_model
from .context import FetchContext, FetchResult, failure
from .http import FetchError, HttpClient, error_line
from .local import local_rows
from .manifest import unique_candidates
from .pdb import fetch_pdb_entry
from .spec import check_spec, resolve_urls

__all__ = ["fetch_library"]

log = logging.getLogger(__name__)


def fetch_library(spec: dict, cache: str | os.PathLike, urls: dict[str, str] | None = None,
                  client: HttpClient | None = None, workers: int = 4) -> FetchResult:
    """Fetch every candidate of ``spec`` into ``cache``; return manifest and failure rows.

    Downloads run in ``workers`` threads sharing one session; rows keep the spec's order (AFDB,
    then PDB, then local). Candidate ids that repeat get ``_2``, ``_3`` ... appended.
    """
    check_spec(spec)
    ctx = FetchContext(Path(cache), urls or resolve_urls(spec), client or HttpClient())
    result = FetchResult()
    tasks: list[tuple[str, str | None, Callable[[], list[dict]]]] = []
    afdb = spec.get("afdb") or {}
    in_archive: set[str] = set()
    if afdb.get("proteome_tar"):
        name = afdb["proteome_tar"]
        try:
            bulk = fetch_afdb_archive(name, ctx)
        except (FetchError, InputError, tarfile.TarError, OSError) as exc:
            log.warning("%s: %s", name, exc)
            bulk = FetchResult([], [failure(name, f"afdb_bulk:{name}", error_line(exc))])
        result.extend(bulk)
        in_archive = {r["accession"] for r in bulk.rows}
    if afdb:
        accessions, failures = afdb_accessions(afdb, ctx)
        accessions = [a for a in accessions if a not in in_archive]
        result.failures.extend(failures)
        fmt, pae = afdb.get("format", "cif"), bool(afdb.get("pae"))
        tasks += [(acc, f"afdb:{acc}",
                   lambda acc=acc: [fetch_afdb_model(acc, ctx, fmt, pae)])
                  for acc in accessions]
    pdb = spec.get("pdb") or {}
    unique = bool(pdb.get("unique_chains"))
    tasks += [(e, f"pdb:{e}", lambda e=e: fetch_pdb_entry(e, ctx, unique))
              for e in pdb.get("entries") or []]
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        outcomes = list(pool.map(lambda task: _run_task(*task), tasks))
    for outcome in outcomes:
        result.extend(outcome)
    result.extend(local_rows(spec.get("local") or []))
    result.rows = unique_candidates(result.rows)
    return result


def _run_task(name: str, source: str | None, task: Callable[[], list[dict]]) -> FetchResult:
    """Run one candidate's fetch; a failure (a server's answer of the wrong shape too) is its
    failure row."""
    try:
        return FetchResult(task(), [])
    except (FetchError, InputError) as exc:
        log.warning("%s: %s", name, exc)
        return FetchResult([], [failure(name, source, str(exc))])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        reason = f"unexpected answer from the server ({type(exc).__name__}: {error_line(exc)})"
        log.warning("%s: %s", name, reason)
        return FetchResult([], [failure(name, source, reason)])
