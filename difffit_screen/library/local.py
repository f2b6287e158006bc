"""Local structure files: paths, folders and globs (``.gz`` too), not parsed here."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

from ..maps import file_sha256
from ..structures import candidate_name, is_structure_file
from .context import FetchResult, failure

__all__ = ["expand_local", "local_rows"]


def expand_local(patterns: Iterable[str]) -> tuple[list[Path], list[dict]]:
    """Structure files named by paths, folders (their structure files) and globs.

    Returns the files (in order, each once) and failure rows for patterns that match nothing.
    """
    files: list[Path] = []
    failures: list[dict] = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_structure_file(p))
        elif path.is_file():
            found = [path]
        elif glob.has_magic(pattern):
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True)
                           if Path(p).is_file() and is_structure_file(p))
        else:
            found = []
        if not found:
            failures.append(failure(pattern, pattern, "no structure files match"))
        files.extend(p.resolve() for p in found)
    return list(dict.fromkeys(files)), failures


def local_rows(patterns: Iterable[str]) -> FetchResult:
    """Manifest rows of local structure files (not parsed here: the pack step parses)."""
    files, failures = expand_local(patterns)
    rows = [{"candidate": candidate_name(p), "source_kind": "local", "accession": None,
             "version": None, "path": str(p), "url": None, "sha256": file_sha256(p),
             "pae_path": None, "chain": None, "n_bytes": p.stat().st_size} for p in files]
    return FetchResult(rows, failures)
