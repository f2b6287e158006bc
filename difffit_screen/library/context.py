"""What every fetch step shares (cache, base URLs, client) and what it returns (rows).

Every path under the cache is made by :meth:`FetchContext.cache_file` from pieces that a server
or a spec gave (accessions, versions, file names of URLs): each piece must be a plain file name
(:data:`SAFE_PIECE`: no ``/``, no leading ``.``, no control characters) and the result must
lie under the cache, else the candidate fails with a :class:`FetchError` naming the
piece and nothing is written.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..maps import file_sha256
from .checks import check_json_file
from .http import FetchError, HttpClient

__all__ = ["SAFE_PIECE", "FetchContext", "FetchResult", "failure"]

SAFE_PIECE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,199}")
"""A piece of a cache path that came from a server or a spec (a plain file or folder name)."""

log = logging.getLogger(__name__)


@dataclass
class FetchContext:
    """What every fetch step needs: the cache folder, base URLs and the HTTP client."""

    cache: Path
    urls: dict[str, str]
    client: HttpClient

    def cache_file(self, *pieces: str, what: str = "file name") -> Path:
        """``<cache>/<piece>/<piece>...``, each piece checked (:data:`SAFE_PIECE`) and the path
        checked to lie under the cache (symbolic links that the user made are followed).

        Raises
        ------
        FetchError
            A piece is not a plain name (``../x``, ``a/b``, ``.hidden``, control characters) or
            the path leaves the cache; the message names the piece (``what`` says what it is).
        """
        for piece in pieces:
            if not isinstance(piece, str) or not SAFE_PIECE.fullmatch(piece):
                raise FetchError(f"unsafe {what} {piece!r}: not a plain file name; not fetched")
        path = self.cache.joinpath(*pieces)
        root = Path(os.path.abspath(self.cache))
        if not Path(os.path.abspath(path)).is_relative_to(root):
            raise FetchError(f"unsafe {what} {'/'.join(pieces)!r}: leaves the cache {root}")
        return path

    def ensure(self, url: str, dest: Path, check: Callable[[Path], object] | None = None,
               ) -> tuple[str, int, bool]:
        """Return ``(sha256, n_bytes, downloaded)`` of ``dest``, downloading it only if missing."""
        if dest.is_file():
            return file_sha256(dest), dest.stat().st_size, False
        sha, n = self.client.download(url, dest, check)
        log.info("downloaded %s (%d bytes)", url, n)
        return sha, n, True

    def cached_json(self, url: str, dest: Path):
        """JSON of ``url``, kept in ``dest`` (asked for only when ``dest`` is missing)."""
        if not dest.is_file():
            self.client.download(url, dest, check_json_file)
        return json.loads(dest.read_bytes())


@dataclass
class FetchResult:
    """Manifest rows and failure rows of one fetch."""

    rows: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    def extend(self, other: FetchResult) -> None:
        self.rows.extend(other.rows)
        self.failures.extend(other.failures)


def failure(candidate: str, source: str | None, reason: str, stage: str = "fetch") -> dict:
    """One failures-table row."""
    return {"candidate": candidate, "source": source, "stage": stage, "reason": reason}
