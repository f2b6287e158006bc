"""What every fetch step shares (cache, base URLs, client) and what it returns (rows)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..maps import file_sha256
from .checks import check_json_file
from .http import HttpClient

__all__ = ["FetchContext", "FetchResult", "failure"]

log = logging.getLogger(__name__)


@dataclass
class FetchContext:
    """What every fetch step needs: the cache folder, base URLs and the HTTP client."""

    cache: Path
    urls: dict[str, str]
    client: HttpClient

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
