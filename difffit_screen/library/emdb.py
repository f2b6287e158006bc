"""EMDB maps: the id, the map file, and its resolution and recommended contour."""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
import shutil
from pathlib import Path

from ..errors import InputError
from ..maps import file_sha256
from ..outputs import atomic_write, write_text
from .checks import check_map_file
from .http import HttpClient
from .spec import resolve_urls

__all__ = ["emdb_contour", "emdb_number", "emdb_resolution", "fetch_emdb_map"]

log = logging.getLogger(__name__)


def emdb_number(emdb_id: str | int) -> str:
    """The digits of an EMDB id: ``EMD-1234``, ``emd_1234`` and ``1234`` give ``"1234"``."""
    match = re.fullmatch(r"(?:EMD[-_]?)?(\d{4,})", str(emdb_id).strip(), flags=re.IGNORECASE)
    if not match:
        raise InputError(f"{emdb_id!r} is not an EMDB id (EMD-1234)")
    return match.group(1)


def emdb_resolution(entry: dict) -> float | None:
    """Resolution (Å) of an EMDB API entry, from its final reconstruction, or None (also for
    an answer of another shape)."""
    determinations = _get(_get(entry, "structure_determination_list"), "structure_determination")
    for det in _as_list(determinations or []):
        for processing in _as_list(_get(det, "image_processing") or []):
            if not isinstance(processing, dict):
                continue
            for key, value in processing.items():
                if not str(key).endswith("final_reconstruction") or not isinstance(value, dict):
                    continue
                res = value.get("resolution")
                res = _number(res.get("valueOf_") if isinstance(res, dict) else res)
                if res is not None and res > 0:
                    return res
    return None


def emdb_contour(entry: dict) -> float | None:
    """Recommended contour level of an EMDB API entry (the primary contour, else the first)."""
    contours = _as_list(_get(_get(_get(entry, "map"), "contour_list"), "contour") or [])
    contours = [c for c in contours if isinstance(c, dict) and _number(c.get("level")) is not None]
    if not contours:
        return None
    primary = [c for c in contours if c.get("primary") in (True, "true", "True")]
    return _number((primary or contours)[0]["level"])


def _number(value) -> float | None:
    """``value`` as a finite float, or None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _get(mapping, key):
    """``mapping[key]`` when ``mapping`` is a dict holding it, else None."""
    return mapping.get(key) if isinstance(mapping, dict) else None


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def fetch_emdb_map(emdb_id: str, out: str | os.PathLike, meta_out: str | os.PathLike | None = None,
                   urls: dict[str, str] | None = None, client: HttpClient | None = None,
                   resolution: float | None = None, contour: float | None = None) -> dict:
    """Download an EMDB map to ``out`` and return (and write) its metadata.

    The map (``emd_<n>.map.gz``) is kept gzipped when ``out`` ends in ``.gz``, else unpacked.
    ``resolution`` and ``contour`` come from the arguments when given, else from the EMDB API
    entry (``<emdb_api>/entry/EMD-<n>``).

    Returns
    -------
    dict
        ``emdb_id, url, path, sha256 (of out), n_bytes, resolution, contour, resolution_source,
        contour_source``.
    """
    number = emdb_number(emdb_id)
    urls = urls or resolve_urls()
    client = client or HttpClient()
    out = Path(out)
    url = f"{urls['emdb_files']}/structures/EMD-{number}/map/emd_{number}.map.gz"
    meta = {"emdb_id": f"EMD-{number}", "url": url, "path": str(out),
            "resolution": resolution, "contour": contour,
            "resolution_source": "config" if resolution is not None else None,
            "contour_source": "config" if contour is not None else None}
    if resolution is None or contour is None:
        api_url = f"{urls['emdb_api']}/entry/EMD-{number}"
        entry = client.get_json(api_url)
        for key, value in (("resolution", emdb_resolution(entry)),
                           ("contour", emdb_contour(entry))):
            if meta[key] is None:
                meta[key] = value
                meta[f"{key}_source"] = "emdb-api" if value is not None else None
                if value is None:
                    log.warning("EMD-%s: the EMDB entry gives no %s", number, key)
        meta["api_url"] = api_url
    if out.name.endswith(".gz"):
        client.download(url, out, check_map_file)
    else:
        packed = out.with_name(out.name + ".download.gz")
        client.download(url, packed, check_map_file)
        _gunzip(packed, out)
    meta["sha256"] = file_sha256(out)
    meta["n_bytes"] = out.stat().st_size
    if meta_out is not None:
        write_text(meta_out, json.dumps(meta, indent=2) + "\n")
    return meta


def _gunzip(src: Path, dest: Path) -> None:
    """Unpack ``src`` into ``dest`` (atomically) and remove ``src``, whatever happens."""
    try:
        with atomic_write(dest, unique=True) as part, gzip.open(src, "rb") as fin, \
                open(part, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    finally:
        src.unlink(missing_ok=True)
