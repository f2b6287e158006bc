"""Candidate libraries: fetching structures and target maps into a shared cache, with a manifest.

Sources, in any mix in one screen (the *spec*, a JSON or YAML file):

.. code-block:: yaml

    afdb:                       # AlphaFold DB models
      accessions: [P69905, ...] # UniProt accessions
      accessions_file: ids.txt  # one accession a line (optional)
      proteome: UP000005640     # accessions streamed from the UniProt REST API
      proteome_tar: UP000005640_9606_HUMAN_v6   # a whole per-proteome archive (bulk download)
      reviewed: false           # proteome: Swiss-Prot entries only
      format: cif               # cif | pdb
      pae: false                # also fetch the PAE JSON
    pdb:                        # RCSB PDB entries, split into chains
      entries: [5ME2]
      unique_chains: true       # one chain per entity (identical chains once)
    local: ["models/*.pdb", "more/", "x.cif.gz"]   # files, folders, globs (.gz too)
    urls: {afdb_api: ..., afdb_files: ..., afdb_bulk: ..., uniprot_api: ..., rcsb_files: ...}

AlphaFold model URLs and their version come from the AFDB prediction API answer (never a
hard-coded ``_v4``). Every download goes through one :class:`HttpClient` (one
``requests.Session``, timeouts, urllib3 retries with exponential backoff that honour
``Retry-After``, ``Content-Length`` checks), is written to ``<file>.<pid>.part``, checked
(gemmi must parse a structure with atoms; the map header must match its size) and only then
renamed into the cache.
The cache (``<cache>/afdb/v<N>/``, ``<cache>/pdb/``, API answers in ``<cache>/afdb/api/`` and
``<cache>/uniprot/``) is shared between screens: a re-run downloads only what is missing.
For a whole organism, ``proteome_tar`` names one of AlphaFold DB's per-proteome archives
(``<afdb_bulk>/<name>.tar``, gzipped model members): it is downloaded once into
``<cache>/afdb/bulk/``, and its models are extracted (each checked by gemmi, through a ``.part``
file) into ``<cache>/afdb/v<N>/``; fragment ``F<n>`` of a long protein is ``<acc>_F<n>``.
Accessions the archive holds are not fetched again one by one.
Requests to one host are throttled (``rate``, 10 a second by default). Relative local paths and
``accessions_file`` are taken from the working folder.

The manifest (Parquet, :data:`MANIFEST_SCHEMA`) has one row per candidate with the file's sha256
and what the services say of it: AFDB models their name, gene, organism and taxon from the
(cached) prediction API answer and their AFDB entry page, PDB chains their RCSB page (their names
come from the mmCIF at packing, :mod:`difffit_screen.annotations`);
whatever could not be fetched (404, truncated, unparsable) is a row of the failures table
(:data:`~difffit_screen.tables.FAILURES_SCHEMA`, ``stage="fetch"``) and the rest goes on.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import json
import logging
import os
import random
import re
import shutil
import tarfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import gemmi
import pyarrow as pa
import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from . import __version__
from .annotations import AFDB_ENTRY, RCSB_ENTRY, annotation_from_prediction
from .errors import InputError
from .maps import file_sha256
from .structures import atoms_from_gemmi, candidate_name, is_structure_file
from .tables import FAILURES_SCHEMA, SCHEMA_VERSION, table_from_rows, write_table

log = logging.getLogger(__name__)

DEFAULT_URLS = {
    "afdb_api": "https://alphafold.ebi.ac.uk/api",
    "afdb_files": "https://alphafold.ebi.ac.uk/files",
    "afdb_bulk": "https://ftp.ebi.ac.uk/pub/databases/alphafold/latest",
    "uniprot_api": "https://rest.uniprot.org",
    "rcsb_files": "https://files.rcsb.org",
    "emdb_api": "https://www.ebi.ac.uk/emdb/api",
    "emdb_files": "https://ftp.ebi.ac.uk/pub/databases/emdb",
}
USER_AGENT = f"difffit-screen/{__version__} (python-requests; structure library screening)"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
SOURCE_KINDS = ("afdb", "pdb", "local")
SPEC_KEYS = {"afdb", "pdb", "local", "urls"}
AFDB_KEYS = {"accessions", "accessions_file", "proteome", "proteome_tar", "reviewed", "format",
             "pae"}
AFDB_TAR_MEMBER = re.compile(r"AF-([A-Za-z0-9]+)-F(\d+)-model_v(\d+)\.(?:cif|pdb)(?:\.gz)?$")
"""Model members of an AlphaFold DB per-proteome archive: accession, fragment, version."""
PDB_KEYS = {"entries", "unique_chains"}

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


class FetchError(RuntimeError):
    """A download that failed for good (after retries); the message is the failure reason."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# --- HTTP --------------------------------------------------------------------------------------

class _Retry(Retry):
    """urllib3's ``Retry`` with this client's backoff, a capped ``Retry-After`` and a log line.

    The wait before retry ``k`` (from 0) is ``backoff * 2**k`` capped at ``backoff_max``, plus
    up to 10 % jitter (urllib3's own formula waits nothing before the first retry); a
    ``Retry-After`` header (seconds or an HTTP date) is honoured up to ``max_retry_after``.
    """

    max_retry_after: float = 300.0

    def new(self, **kw):
        new = super().new(**kw)
        new.max_retry_after = self.max_retry_after
        return new

    def get_backoff_time(self) -> float:
        k = len(self.history) - 1
        if k < 0:
            return 0.0
        wait = min(self.backoff_factor * 2**k, self.backoff_max)
        return wait * (1.0 + 0.1 * random.random())

    def get_retry_after(self, response) -> float | None:
        seconds = parse_retry_after(response.headers.get("Retry-After"))
        return None if seconds is None else min(seconds, self.max_retry_after)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None,
                  _stacktrace=None):
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        host = f"{_pool.scheme}://{_pool.host}:{_pool.port}" if _pool is not None else ""
        why = f"HTTP {response.status}" if response is not None and error is None \
            else _one_line(error) if error is not None else "retry"
        log.info("%s%s: %s, retry %d", host, url or "", why, len(new.history))
        return new


@dataclass
class HttpClient:
    """One ``requests.Session`` with timeouts and retries, shared by every download of a run.

    Retries are urllib3's (:class:`urllib3.util.Retry` on the session's ``HTTPAdapter``):
    connection errors, timeouts and the statuses in :data:`RETRY_STATUS`, with the wait before
    retry ``k`` (from 0) the server's ``Retry-After`` (seconds or an HTTP date, capped at
    ``max_retry_after``) when it sent one, else ``backoff * 2**k`` (capped at ``max_backoff``)
    plus up to 10 % jitter. A body that breaks off or is shorter than its ``Content-Length``
    (which urllib3 cannot retry: the body is read after it returned) is fetched again here, with
    the same waits.

    Parameters
    ----------
    retries : int
        Retries after the first attempt.
    timeout : float
        Connect and read timeout in seconds (per socket operation, not per file).
    backoff : float
        First backoff in seconds.
    workers : int
        Size of the connection pool (concurrent downloads).
    rate : float
        Most requests per second to one host (0: no limit), whatever the number of workers.
    """

    retries: int = 5
    timeout: float = 60.0
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_retry_after: float = 300.0
    workers: int = 4
    rate: float = 10.0
    session: requests.Session = field(init=False, repr=False)
    _next_slot: dict = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=max(self.workers, 1),
                              max_retries=self.make_retry())
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def make_retry(self) -> Retry:
        """The urllib3 retry policy of the session (see the class docstring)."""
        retry = _Retry(total=self.retries, connect=self.retries, read=self.retries,
                       status=self.retries, other=self.retries, redirect=False,
                       allowed_methods=frozenset({"GET", "HEAD"}),
                       status_forcelist=RETRY_STATUS, backoff_factor=self.backoff,
                       backoff_max=self.max_backoff, respect_retry_after_header=True,
                       raise_on_status=False, raise_on_redirect=False)
        retry.max_retry_after = self.max_retry_after
        return retry

    def close(self) -> None:
        """Close the session's connections."""
        self.session.close()

    def get_bytes(self, url: str) -> bytes:
        """Return the (content-decoded) body of ``url``.

        Raises
        ------
        FetchError
            On 404 and other client errors at once, on the rest after the retries.
        """
        chunks: list[bytes] = []
        self._request(url, lambda r: chunks.extend(r.iter_content(1 << 16)), lambda: chunks.clear())
        return b"".join(chunks)

    def get_json(self, url: str):
        """Return the JSON body of ``url`` (see :meth:`get_bytes`)."""
        body = self.get_bytes(url)
        try:
            return json.loads(body)
        except ValueError:
            raise FetchError(f"{url}: answer is not JSON") from None

    def download(self, url: str, dest: Path, check: Callable[[Path], object] | None = None,
                 ) -> tuple[str, int]:
        """Download ``url`` to ``dest`` through a ``.part`` file; return ``(sha256, n_bytes)``.

        ``check(part)`` runs on the complete file before the rename; an exception from it
        (an unparsable file) is a :class:`FetchError` and no retry.
        """
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = part_path(dest)
        state: dict = {}

        def sink(response: requests.Response) -> None:
            digest, n_bytes = hashlib.sha256(), 0
            with open(part, "wb") as fh:
                for chunk in response.iter_content(1 << 20):
                    fh.write(chunk)
                    digest.update(chunk)
                    n_bytes += len(chunk)
            state.update(sha=digest.hexdigest(), n=n_bytes)

        try:
            self._request(url, sink, lambda: None)
            if check is not None:
                try:
                    check(part)
                except Exception as exc:
                    raise FetchError(f"{url}: {_one_line(exc)}") from None
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
        return state["sha"], state["n"]

    def _request(self, url: str, sink: Callable[[requests.Response], None],
                 restart: Callable[[], None]) -> None:
        """GET ``url`` (urllib3 retries the request); ``sink(r)`` reads the body, and a body
        that breaks off is fetched again, ``restart()`` first."""
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            restart()
            self._throttle(url)
            try:
                r = self.session.get(url, timeout=self.timeout, stream=True)
            except (requests.ConnectionError, requests.Timeout) as exc:  # urllib3 gave up
                raise FetchError(f"{url}: {_one_line(exc)} (after {self.retries} retries)") \
                    from None
            with r:
                if r.status_code == 404:
                    raise FetchError(f"{url}: not found (HTTP 404)", 404)
                if r.status_code >= 400:
                    done = _retries_done(r)
                    raise FetchError(f"{url}: HTTP {r.status_code}"
                                     + (f" after {done} retries" if done else ""), r.status_code)
                try:
                    sink(r)
                    _check_length(r, url)
                    return
                except (requests.ConnectionError, requests.Timeout,
                        requests.exceptions.ChunkedEncodingError, _Truncated) as exc:
                    if last:
                        raise FetchError(f"{url}: {_one_line(exc)} (after {attempt} retries)") \
                            from None
                    wait = self._wait(attempt, None)
                    log.info("%s: %s, retry %d in %.2f s", url, _one_line(exc), attempt + 1,
                             wait)
            time.sleep(wait)

    def _throttle(self, url: str) -> None:
        """Sleep until this host may get another request (at most ``rate`` a second)."""
        if self.rate <= 0:
            return
        host = urlsplit(url).netloc
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_slot.get(host, now))
            self._next_slot[host] = start + 1.0 / self.rate
        if start > now:
            time.sleep(start - now)

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        seconds = parse_retry_after(retry_after)
        if seconds is not None:
            return min(seconds, self.max_retry_after)
        wait = min(self.backoff * 2**attempt, self.max_backoff)
        return wait * (1.0 + 0.1 * random.random())


class _Truncated(OSError):
    """The body was shorter than its Content-Length."""


def _retries_done(response: requests.Response) -> int:
    """How many times urllib3 retried the request that gave ``response``."""
    retries = getattr(response.raw, "retries", None)
    return len(retries.history) if retries is not None else 0


def part_path(dest: Path) -> Path:
    """Where ``dest`` is written before the rename: unique per process and thread."""
    return dest.with_name(f"{dest.name}.{os.getpid()}-{threading.get_ident()}.part")


def _check_length(response: requests.Response, url: str) -> None:
    expected = response.headers.get("Content-Length")
    raw = response.raw
    if expected is None or not hasattr(raw, "tell"):
        return
    got = raw.tell()  # bytes read off the wire (before content decoding)
    if got != int(expected):
        raise _Truncated(f"truncated body: {got} of {expected} bytes")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date), or None."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- checks ------------------------------------------------------------------------------------

def parse_structure_file(path: str | os.PathLike) -> gemmi.Structure:
    """Parse a PDB/mmCIF file (gzipped or not, whatever its name) and check it has atoms.

    Raises
    ------
    InputError
        If the file cannot be parsed or holds no polymer atoms.
    """
    data = Path(path).read_bytes()
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        st = gemmi.read_structure_string(data)
    except Exception as exc:  # gzip/gemmi raise EOFError, OSError, RuntimeError, ValueError
        raise InputError(f"cannot parse structure ({_one_line(exc)})") from None
    if len(atoms_from_gemmi(st, candidate_name(path))) == 0:
        raise InputError("unparsable structure: no atoms")
    return st


def check_json_file(path: str | os.PathLike) -> None:
    """Raise ``ValueError`` unless ``path`` holds JSON."""
    json.loads(Path(path).read_bytes())


def check_map_file(path: str | os.PathLike) -> None:
    """Raise ``InputError`` unless ``path`` is an MRC/CCP4 map (``.gz`` too) with all its data."""
    import mrcfile

    try:
        with mrcfile.open(str(path), permissive=True) as m:
            if m.data is None:
                raise InputError("map has no data (truncated?)")
            h = m.header
            expected = int(h.nx) * int(h.ny) * int(h.nz)
            if m.data.size != expected:
                raise InputError(f"map holds {m.data.size} of {expected} voxels (truncated?)")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read map ({_one_line(exc)})") from None


# --- spec --------------------------------------------------------------------------------------

def load_spec(path: str | os.PathLike) -> dict:
    """Read and check a library spec (JSON or YAML; see the module docstring).

    Raises
    ------
    InputError
        If the file is missing, not JSON/YAML, or has unknown keys or wrong types.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: spec file not found")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not JSON/YAML ({_one_line(exc)})") from None
    check_spec(spec, str(path))
    return spec


def check_spec(spec: dict, where: str = "spec") -> None:
    """Raise ``InputError`` naming ``where`` if ``spec`` is not a valid library spec."""
    def fail(msg: str) -> None:
        raise InputError(f"{where}: {msg}")

    if not isinstance(spec, dict):
        fail("must be a mapping with keys afdb, pdb, local, urls")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        fail(f"unknown key(s) {sorted(unknown)}; expected some of {sorted(SPEC_KEYS)}")
    afdb = spec.get("afdb") or {}
    pdb = spec.get("pdb") or {}
    for name, section, keys in (("afdb", afdb, AFDB_KEYS), ("pdb", pdb, PDB_KEYS),
                                ("urls", spec.get("urls") or {}, set(DEFAULT_URLS))):
        if not isinstance(section, dict):
            fail(f"'{name}' must be a mapping")
        if set(section) - keys:
            fail(f"unknown key(s) in '{name}': {sorted(set(section) - keys)}; "
                 f"expected some of {sorted(keys)}")
    for name, value in (("afdb.accessions", afdb.get("accessions")),
                        ("pdb.entries", pdb.get("entries"))):
        if value is not None and not (isinstance(value, list)
                                      and all(isinstance(v, str) for v in value)):
            fail(f"'{name}' must be a list of strings")
    tar = afdb.get("proteome_tar")
    if tar is not None and not (isinstance(tar, str)
                                and re.fullmatch(r"[A-Za-z0-9_.-]+", tar.removesuffix(".tar"))):
        fail(f"'afdb.proteome_tar' must be an archive name like UP000005640_9606_HUMAN_v6, "
             f"not {tar!r}")
    if afdb.get("format", "cif") not in ("cif", "pdb"):
        fail(f"'afdb.format' must be cif or pdb, not {afdb.get('format')!r}")
    local = spec.get("local")
    if isinstance(local, str):
        spec["local"] = [local]
    elif local is not None and not (isinstance(local, list)
                                    and all(isinstance(v, str) for v in local)):
        fail("'local' must be a list of paths or globs")


def resolve_urls(spec: dict | None = None, **overrides: str | None) -> dict[str, str]:
    """Base URLs: defaults, then the spec's ``urls``, then non-None ``overrides``."""
    urls = dict(DEFAULT_URLS)
    urls.update((spec or {}).get("urls") or {})
    urls.update({k: v for k, v in overrides.items() if v})
    unknown = set(urls) - set(DEFAULT_URLS)
    if unknown:
        raise InputError(f"unknown base URL key(s) {sorted(unknown)}")
    for key, value in urls.items():
        if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
            raise InputError(f"base URL {key} = {value!r} is not an http(s) URL")
    return {k: v.rstrip("/") for k, v in urls.items()}


# --- fetching ----------------------------------------------------------------------------------

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


def proteome_accessions(proteome: str, ctx: FetchContext, reviewed: bool = False) -> list[str]:
    """UniProt accessions of ``proteome`` from the UniProt REST stream (cached in the cache)."""
    if not re.fullmatch(r"UP\d{9,}", proteome):
        raise InputError(f"proteome id {proteome!r} does not look like UP000005640")
    query = f"(proteome:{proteome})" + (" AND (reviewed:true)" if reviewed else "")
    url = (f"{ctx.urls['uniprot_api']}/uniprotkb/stream?query={quote(query)}&format=list")
    dest = ctx.cache / "uniprot" / f"{proteome}{'_reviewed' if reviewed else ''}.list"
    if not dest.is_file():
        ctx.client.download(url, dest)
    return [line.strip() for line in dest.read_text().splitlines() if line.strip()]


def select_prediction(entries: list[dict], accession: str) -> dict:
    """Pick the AFDB API entry of ``accession`` itself (not an isoform), fragment F1 first."""
    if isinstance(entries, dict):
        entries = [entries]
    mine = [e for e in entries if str(e.get("uniprotAccession", "")).upper() == accession.upper()]
    if not mine:
        raise FetchError(f"AFDB API: no entry for {accession} itself "
                         f"({len(entries)} entries for isoforms/others)")
    mine.sort(key=lambda e: (not str(e.get("entryId", "")).endswith("-F1"),
                             str(e.get("entryId", ""))))
    return mine[0]


def prediction_version(entry: dict, url: str) -> str:
    """Model version: the API's ``latestVersion``, else the ``_v<N>`` of the file URL."""
    if entry.get("latestVersion") is not None:
        return str(entry["latestVersion"])
    match = re.search(r"_v(\d+)\.\w+$", url)
    if not match:
        raise FetchError(f"AFDB API: no version for {url}")
    return match.group(1)


def rebase_url(url: str, default_base: str, base: str) -> str:
    """``url`` moved from ``default_base`` to ``base`` (file URLs of an API answer)."""
    if base == default_base.rstrip("/"):
        return url
    path = urlsplit(url).path
    marker = urlsplit(default_base).path.rstrip("/") + "/"
    tail = path.split(marker, 1)[1] if marker in path else path.rsplit("/", 1)[-1]
    return f"{base}/{tail}"


def fetch_afdb_model(accession: str, ctx: FetchContext, fmt: str = "cif",
                     pae: bool = False) -> dict:
    """Fetch one AFDB model (and optionally its PAE JSON); return its manifest row.

    The file URL and version come from the prediction API (``<afdb_api>/prediction/<acc>``),
    whose answer is cached; if the cached answer names a file that is gone (a 404, as when AFDB
    replaced v4 by v6), the API is asked again once.
    """
    api_cache = ctx.cache / "afdb" / "api" / f"{accession}.json"
    was_cached = api_cache.is_file()
    try:
        return _fetch_afdb_model(accession, ctx, fmt, pae, api_cache)
    except FetchError as exc:
        if exc.status != 404 or not was_cached or not api_cache.is_file():
            raise
        log.info("%s: cached AFDB API answer is stale (%s); asking again", accession, exc)
        api_cache.unlink(missing_ok=True)
        return _fetch_afdb_model(accession, ctx, fmt, pae, api_cache)


def _fetch_afdb_model(accession: str, ctx: FetchContext, fmt: str, pae: bool,
                      api_cache: Path) -> dict:
    api = ctx.cached_json(f"{ctx.urls['afdb_api']}/prediction/{quote(accession)}", api_cache)
    entry = select_prediction(api, accession)
    key = "cifUrl" if fmt == "cif" else "pdbUrl"
    if not entry.get(key):
        raise FetchError(f"AFDB API: no {key} for {accession}")
    url = rebase_url(entry[key], DEFAULT_URLS["afdb_files"], ctx.urls["afdb_files"])
    version = prediction_version(entry, url)
    folder = ctx.cache / "afdb" / f"v{version}"
    dest = folder / url.rsplit("/", 1)[-1]
    sha, n_bytes, _ = ctx.ensure(url, dest, parse_structure_file)
    pae_path = None
    if pae and entry.get("paeDocUrl"):
        pae_url = rebase_url(entry["paeDocUrl"], DEFAULT_URLS["afdb_files"],
                             ctx.urls["afdb_files"])
        pae_dest = folder / pae_url.rsplit("/", 1)[-1]
        try:
            ctx.ensure(pae_url, pae_dest, check_json_file)
            pae_path = str(pae_dest)
        except FetchError as exc:
            log.warning("%s: PAE not fetched (%s); the model is kept", accession, exc)
    return {"candidate": accession, "source_kind": "afdb", "accession": accession,
            "version": version, "path": str(dest), "url": url, "sha256": sha,
            "pae_path": pae_path, "chain": None, "n_bytes": n_bytes,
            **annotation_from_prediction(entry)}


def polymer_chains(st: gemmi.Structure, unique: bool = False) -> list[str]:
    """Names of the chains of the first model that hold a polymer.

    With ``unique``, one chain per entity (or per sequence when the file has no entities).
    """
    st.setup_entities()
    seen: set[str] = set()
    names: list[str] = []
    for chain in st[0]:
        polymer = chain.get_polymer()
        if not len(polymer):
            continue
        entity = st.get_entity_of(polymer)
        key = entity.name if entity is not None else polymer.make_one_letter_sequence()
        if unique and key in seen:
            continue
        seen.add(key)
        names.append(chain.name)
    return names


def fetch_pdb_entry(entry_id: str, ctx: FetchContext, unique_chains: bool = False,
                    ) -> list[dict]:
    """Fetch one RCSB entry (``.cif.gz``); return one manifest row per (unique) polymer chain."""
    pdb_id = entry_id.strip().upper()
    if not re.fullmatch(r"[0-9][A-Z0-9]{3}|PDB_[0-9A-Z]{8}", pdb_id):
        raise FetchError(f"{entry_id!r} is not a PDB id")
    url = f"{ctx.urls['rcsb_files']}/download/{pdb_id}.cif.gz"
    dest = ctx.cache / "pdb" / f"{pdb_id}.cif.gz"
    sha, n_bytes, _ = ctx.ensure(url, dest, parse_structure_file)
    chains = polymer_chains(parse_structure_file(dest), unique_chains)
    return [{"candidate": f"{pdb_id}_{ch}", "source_kind": "pdb", "accession": pdb_id,
             "version": None, "path": str(dest), "url": url, "sha256": sha, "pae_path": None,
             "chain": ch, "n_bytes": n_bytes, "entry_url": RCSB_ENTRY.format(pdb_id)}
            for ch in chains]


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


def check_tar_file(path: str | os.PathLike) -> None:
    """Raise ``ValueError`` unless ``path`` is a readable tar archive."""
    if not tarfile.is_tarfile(path):
        raise ValueError("not a tar archive")


def fetch_afdb_archive(name: str, ctx: FetchContext) -> FetchResult:
    """Every model of the AFDB per-proteome archive ``<afdb_bulk>/<name>.tar``.

    The archive is downloaded once into ``<cache>/afdb/bulk/``; each model member is extracted
    (through a ``.part`` file, checked by gemmi) into ``<cache>/afdb/v<N>/`` unless already
    there. An unreadable member is a failure row; the rest go on.
    """
    name = name.removesuffix(".tar")
    url = f"{ctx.urls['afdb_bulk']}/{name}.tar"
    archive = ctx.cache / "afdb" / "bulk" / f"{name}.tar"
    ctx.ensure(url, archive, check_tar_file)
    result = FetchResult()
    with tarfile.open(archive) as tf:
        for member in tf:
            match = AFDB_TAR_MEMBER.search(member.name)
            if not member.isfile() or not match:
                continue
            acc, fragment, version = match.group(1), int(match.group(2)), match.group(3)
            candidate = acc if fragment == 1 else f"{acc}_F{fragment}"
            dest = ctx.cache / "afdb" / f"v{version}" / Path(member.name).name
            source = f"{url}#{member.name}"
            try:
                if not dest.is_file():
                    _extract_member(tf, member, dest)
            except Exception as exc:
                result.failures.append(failure(candidate, source,
                                               f"{name}.tar: {member.name}: {_one_line(exc)}"))
                continue
            result.rows.append({"candidate": candidate, "source_kind": "afdb", "accession": acc,
                                "version": version, "path": str(dest), "url": source,
                                "sha256": file_sha256(dest), "pae_path": None, "chain": None,
                                "n_bytes": dest.stat().st_size,
                                "entry_url": AFDB_ENTRY.format(acc)})
    log.info("%s.tar: %d models, %d unreadable", name, len(result.rows), len(result.failures))
    return result


def _extract_member(tf: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    try:
        with tf.extractfile(member) as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        parse_structure_file(part)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def afdb_accessions(section: dict, ctx: FetchContext) -> tuple[list[str], list[dict]]:
    """Accessions of the spec's ``afdb`` section (list, file, proteome), each once, in order."""
    accessions = [a.strip() for a in section.get("accessions") or [] if a.strip()]
    failures: list[dict] = []
    if section.get("accessions_file"):
        path = Path(section["accessions_file"])
        if not path.is_file():
            raise InputError(f"{path}: accessions file not found")
        accessions += [ln.split()[0] for ln in path.read_text().splitlines()
                       if ln.strip() and not ln.startswith("#")]
    if section.get("proteome"):
        proteome = section["proteome"]
        try:
            accessions += proteome_accessions(proteome, ctx, bool(section.get("reviewed")))
        except FetchError as exc:
            failures.append(failure(proteome, None, f"proteome list: {exc}"))
    return list(dict.fromkeys(accessions)), failures


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
            bulk = FetchResult([], [failure(name, f"afdb_bulk:{name}", _one_line(exc))])
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
    try:
        return FetchResult(task(), [])
    except (FetchError, InputError) as exc:
        log.warning("%s: %s", name, exc)
        return FetchResult([], [failure(name, source, str(exc))])


def unique_candidates(rows: list[dict]) -> list[dict]:
    """Rows with repeated candidate ids renamed ``<id>_2``, ``<id>_3`` ... (a warning each)."""
    seen: dict[str, int] = {}
    for row in rows:
        name = row["candidate"]
        if name in seen:
            seen[name] += 1
            new = f"{name}_{seen[name]}"
            while new in seen:
                seen[name] += 1
                new = f"{name}_{seen[name]}"
            log.warning("candidate id %s repeats (%s); renamed %s", name, row["path"], new)
            row["candidate"] = new
        seen.setdefault(row["candidate"], 1)
    return rows


def write_fetch_outputs(result: FetchResult, manifest: str | os.PathLike,
                        failures: str | os.PathLike) -> None:
    """Write the manifest and failures Parquet tables."""
    write_table(table_from_rows(result.rows, MANIFEST_SCHEMA), manifest)
    write_table(table_from_rows(result.failures, FAILURES_SCHEMA), failures)


# --- EMDB maps ---------------------------------------------------------------------------------

def emdb_number(emdb_id: str | int) -> str:
    """The digits of an EMDB id: ``EMD-1234``, ``emd_1234`` and ``1234`` give ``"1234"``."""
    match = re.fullmatch(r"(?:EMD[-_]?)?(\d{4,})", str(emdb_id).strip(), flags=re.IGNORECASE)
    if not match:
        raise InputError(f"{emdb_id!r} is not an EMDB id (EMD-1234)")
    return match.group(1)


def emdb_resolution(entry: dict) -> float | None:
    """Resolution (Å) of an EMDB API entry, from its final reconstruction, or None."""
    determinations = (entry.get("structure_determination_list") or {}).get(
        "structure_determination") or []
    for det in _as_list(determinations):
        for processing in _as_list(det.get("image_processing") or []):
            for key, value in processing.items():
                if not key.endswith("final_reconstruction") or not isinstance(value, dict):
                    continue
                res = value.get("resolution")
                res = res.get("valueOf_") if isinstance(res, dict) else res
                try:
                    return float(res)
                except (TypeError, ValueError):
                    continue
    return None


def emdb_contour(entry: dict) -> float | None:
    """Recommended contour level of an EMDB API entry (the primary contour, else the first)."""
    contours = _as_list(((entry.get("map") or {}).get("contour_list") or {}).get("contour") or [])
    contours = [c for c in contours if isinstance(c, dict) and c.get("level") is not None]
    if not contours:
        return None
    primary = [c for c in contours if c.get("primary") in (True, "true", "True")]
    return float((primary or contours)[0]["level"])


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
        _write_json(meta, Path(meta_out))
    return meta


def _gunzip(src: Path, dest: Path) -> None:
    part = part_path(dest)
    try:
        with gzip.open(src, "rb") as fin, open(part, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
        src.unlink(missing_ok=True)


def _write_json(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(part, path)


# --- command line ------------------------------------------------------------------------------

def add_http_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the HTTP client (retries, timeout, backoff, workers)."""
    p.add_argument("--retries", type=int, default=5, help="retries per request (default 5)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="connect/read timeout in seconds (default 60)")
    p.add_argument("--backoff", type=float, default=1.0,
                   help="first retry wait in seconds, doubled each retry (default 1)")
    p.add_argument("--rate", type=float, default=10.0,
                   help="most requests per second to one host, 0 for no limit (default 10)")


def add_fetch_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difffit-screen fetch``."""
    p.add_argument("--spec", required=True, help="library spec, JSON or YAML")
    p.add_argument("--cache", required=True, help="cache folder shared between screens")
    p.add_argument("--manifest", required=True, help="output manifest (Parquet)")
    p.add_argument("--failures", required=True, help="output failures table (Parquet)")
    for key in ("afdb_api", "afdb_files", "afdb_bulk", "uniprot_api", "rcsb_files"):
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, default=None,
                       help=f"base URL (default {DEFAULT_URLS[key]})")
    add_http_arguments(p)
    p.add_argument("--workers", type=int, default=4, help="concurrent downloads (default 4)")


def run_fetch_command(args: argparse.Namespace) -> int:
    """Run ``difffit-screen fetch``."""
    spec = load_spec(args.spec)
    urls = resolve_urls(spec, afdb_api=args.afdb_api, afdb_files=args.afdb_files,
                        afdb_bulk=args.afdb_bulk, uniprot_api=args.uniprot_api,
                        rcsb_files=args.rcsb_files)
    client = HttpClient(retries=args.retries, timeout=args.timeout, backoff=args.backoff,
                        workers=args.workers, rate=args.rate)
    try:
        result = fetch_library(spec, args.cache, urls, client, args.workers)
    finally:
        client.close()
    write_fetch_outputs(result, args.manifest, args.failures)
    log.info("fetch: %d candidates, %d failures", len(result.rows), len(result.failures))
    return 0


def add_fetch_map_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difffit-screen fetch-map``."""
    p.add_argument("--emdb", required=True, help="EMDB id, e.g. EMD-3488")
    p.add_argument("--out", required=True,
                   help="map file to write (kept gzipped if it ends in .gz)")
    p.add_argument("--meta", required=True, help="output JSON: resolution, contour, sha256 ...")
    p.add_argument("--resolution", type=float, default=None,
                   help="resolution in Å (default: from the EMDB API)")
    p.add_argument("--contour", type=float, default=None,
                   help="contour level (default: the EMDB recommended one)")
    for key in ("emdb_api", "emdb_files"):
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, default=None,
                       help=f"base URL (default {DEFAULT_URLS[key]})")
    add_http_arguments(p)


def run_fetch_map_command(args: argparse.Namespace) -> int:
    """Run ``difffit-screen fetch-map``."""
    urls = resolve_urls(None, emdb_api=args.emdb_api, emdb_files=args.emdb_files)
    client = HttpClient(retries=args.retries, timeout=args.timeout, backoff=args.backoff,
                        rate=args.rate)
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
