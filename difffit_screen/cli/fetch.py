"""``difffit-screen fetch``: fetch a candidate library into a cache and write its manifest.

Also the options of the HTTP client (:func:`add_http_arguments`), shared with ``fetch-map``.
"""

from __future__ import annotations

import argparse
import logging

from ..library import (
    DEFAULT_URLS,
    HttpClient,
    fetch_library,
    load_spec,
    resolve_urls,
    write_fetch_outputs,
)

__all__ = ["add_arguments", "add_http_arguments", "add_url_arguments", "http_client", "run"]

log = logging.getLogger("difffit_screen.library")


def add_http_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the HTTP client (retries, timeout, backoff, rate)."""
    p.add_argument("--retries", type=int, default=5, help="retries per request (default 5)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="connect/read timeout in seconds (default 60)")
    p.add_argument("--backoff", type=float, default=1.0,
                   help="first retry wait in seconds, doubled each retry (default 1)")
    p.add_argument("--rate", type=float, default=10.0,
                   help="most requests per second to one host, 0 for no limit (default 10)")


def add_url_arguments(p: argparse.ArgumentParser, keys: tuple[str, ...]) -> None:
    """One ``--<key>`` base-URL option per key of :data:`~difffit_screen.library.DEFAULT_URLS`."""
    for key in keys:
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, default=None,
                       help=f"base URL (default {DEFAULT_URLS[key]})")


def http_client(args: argparse.Namespace, **kw) -> HttpClient:
    """The :class:`~difffit_screen.library.HttpClient` of the :func:`add_http_arguments` options."""
    return HttpClient(retries=args.retries, timeout=args.timeout, backoff=args.backoff,
                      rate=args.rate, **kw)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difffit-screen fetch``."""
    p.add_argument("--spec", required=True, help="library spec, JSON or YAML")
    p.add_argument("--cache", required=True, help="cache folder shared between screens")
    p.add_argument("--manifest", required=True, help="output manifest (Parquet)")
    p.add_argument("--failures", required=True, help="output failures table (Parquet)")
    add_url_arguments(p, ("afdb_api", "afdb_files", "afdb_bulk", "uniprot_api", "rcsb_files"))
    add_http_arguments(p)
    p.add_argument("--workers", type=int, default=4, help="concurrent downloads (default 4)")


def run(args: argparse.Namespace) -> int:
    """Run ``difffit-screen fetch``."""
    spec = load_spec(args.spec)
    urls = resolve_urls(spec, afdb_api=args.afdb_api, afdb_files=args.afdb_files,
                        afdb_bulk=args.afdb_bulk, uniprot_api=args.uniprot_api,
                        rcsb_files=args.rcsb_files)
    client = http_client(args, workers=args.workers)
    try:
        result = fetch_library(spec, args.cache, urls, client, args.workers)
    finally:
        client.close()
    write_fetch_outputs(result, args.manifest, args.failures)
    log.info("fetch: %d candidates, %d failures", len(result.rows), len(result.failures))
    return 0
