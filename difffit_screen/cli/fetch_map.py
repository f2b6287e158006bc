"""``difffit-screen fetch-map``: download an EMDB map and its resolution and contour."""

from __future__ import annotations

import argparse
import logging

from ..errors import InputError
from ..library import FetchError, fetch_emdb_map, resolve_urls
from .fetch import add_http_arguments, add_url_arguments, http_client

__all__ = ["add_arguments", "run"]

log = logging.getLogger("difffit_screen.library")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difffit-screen fetch-map``."""
    p.add_argument("--emdb", required=True, help="EMDB id, e.g. EMD-3488")
    p.add_argument("--out", required=True,
                   help="map file to write (kept gzipped if it ends in .gz)")
    p.add_argument("--meta", required=True, help="output JSON: resolution, contour, sha256 ...")
    p.add_argument("--resolution", type=float, default=None,
                   help="resolution in Å (default: from the EMDB API)")
    p.add_argument("--contour", type=float, default=None,
                   help="contour level (default: the EMDB recommended one)")
    add_url_arguments(p, ("emdb_api", "emdb_files"))
    add_http_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Run ``difffit-screen fetch-map``; a failed download is bad input (exit status 2)."""
    urls = resolve_urls(None, emdb_api=args.emdb_api, emdb_files=args.emdb_files)
    client = http_client(args)
    try:
        meta = fetch_emdb_map(args.emdb, args.out, args.meta, urls, client,
                              args.resolution, args.contour)
    except FetchError as exc:
        raise InputError(str(exc)) from None
    finally:
        client.close()
    log.info("fetch-map: %s -> %s (resolution %s Å, contour %s)", meta["emdb_id"],
             meta["path"], meta["resolution"], meta["contour"])
    return 0
