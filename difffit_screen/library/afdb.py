"""AlphaFold DB models: accessions (list, file, UniProt proteome), single models through the
prediction API, and whole per-proteome archives."""

from __future__ import annotations

import logging
import re
import shutil
import tarfile
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ..annotations import AFDB_ENTRY, annotation_from_prediction
from ..errors import InputError
from ..maps import file_sha256
from ..outputs import atomic_write
from .checks import check_json_file, check_tar_file, parse_structure_file
from .context import FetchContext, FetchResult, failure
from .http import FetchError, error_line, is_http_url
from .spec import DEFAULT_URLS

__all__ = ["ACCESSION", "AFDB_TAR_MEMBER", "VERSION", "afdb_accessions", "check_accession",
           "fetch_afdb_archive", "fetch_afdb_model", "prediction_version", "proteome_accessions",
           "rebase_url", "select_prediction", "url_file_name"]

log = logging.getLogger(__name__)

AFDB_TAR_MEMBER = re.compile(r"AF-([A-Za-z0-9]+)-F(\d+)-model_v(\d+)\.(?:cif|pdb)(?:\.gz)?$")
"""Model members of an AlphaFold DB per-proteome archive: accession, fragment, version."""

ACCESSION = re.compile(r"[A-Za-z0-9]{1,40}(?:-\d{1,4})?")
"""An accession that may be asked for and become a file name (UniProt, with an isoform)."""

VERSION = re.compile(r"\d{1,4}")
"""A model version (``latestVersion`` of the AFDB API, ``_v<N>`` of a file)."""


def check_accession(accession: str) -> str:
    """``accession`` itself when it is one (:data:`ACCESSION`).

    Raises
    ------
    FetchError
        Naming the value (from a list, a file or the UniProt stream) that is not an accession.
    """
    if not isinstance(accession, str) or not ACCESSION.fullmatch(accession):
        raise FetchError(f"{accession!r} is not a UniProt accession; not fetched")
    return accession


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


def proteome_accessions(proteome: str, ctx: FetchContext, reviewed: bool = False) -> list[str]:
    """UniProt accessions of ``proteome`` from the UniProt REST stream (cached in the cache)."""
    if not re.fullmatch(r"UP\d{9,}", proteome):
        raise InputError(f"proteome id {proteome!r} does not look like UP000005640")
    query = f"(proteome:{proteome})" + (" AND (reviewed:true)" if reviewed else "")
    url = (f"{ctx.urls['uniprot_api']}/uniprotkb/stream?query={quote(query)}&format=list")
    dest = ctx.cache_file("uniprot", f"{proteome}{'_reviewed' if reviewed else ''}.list",
                          what="proteome id")
    if not dest.is_file():
        ctx.client.download(url, dest)
    return [line.strip() for line in dest.read_text().splitlines() if line.strip()]


def select_prediction(entries: list[dict], accession: str) -> dict:
    """Pick the AFDB API entry of ``accession`` itself (not an isoform), fragment F1 first."""
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise FetchError(f"AFDB API: the answer for {accession} is not a list of entries")
    mine = [e for e in entries if str(e.get("uniprotAccession", "")).upper() == accession.upper()]
    if not mine:
        raise FetchError(f"AFDB API: no entry for {accession} itself "
                         f"({len(entries)} entries for isoforms/others)")
    mine.sort(key=lambda e: (not str(e.get("entryId", "")).endswith("-F1"),
                             str(e.get("entryId", ""))))
    return mine[0]


def prediction_version(entry: dict, url: str) -> str:
    """Model version: the API's ``latestVersion``, else the ``_v<N>`` of the file URL.

    Raises
    ------
    FetchError
        The API's version is not a number (it names a cache folder), or there is none.
    """
    if entry.get("latestVersion") is not None:
        version = str(entry["latestVersion"])
        if not VERSION.fullmatch(version):
            raise FetchError(f"AFDB API: latestVersion {version!r} is not a version number")
        return version
    match = re.search(r"_v(\d+)\.\w+$", url)
    if not match:
        raise FetchError(f"AFDB API: no version for {url}")
    return match.group(1)


def url_file_name(url: str) -> str:
    """The last segment of ``url``'s path (decoded), the name of the file it is saved as."""
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


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
    check_accession(accession)
    api_cache = ctx.cache_file("afdb", "api", f"{accession}.json", what="accession")
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
    if not isinstance(entry[key], str) or not is_http_url(entry[key]):
        raise FetchError(f"AFDB API: {key} {entry[key]!r} is not an http(s) URL")
    url = rebase_url(entry[key], DEFAULT_URLS["afdb_files"], ctx.urls["afdb_files"])
    version = prediction_version(entry, url)
    dest = ctx.cache_file("afdb", f"v{version}", url_file_name(url))
    sha, n_bytes, _ = ctx.ensure(url, dest, parse_structure_file)
    pae_path = None
    if pae and entry.get("paeDocUrl"):
        try:
            if not isinstance(entry["paeDocUrl"], str) or not is_http_url(entry["paeDocUrl"]):
                raise FetchError(f"AFDB API: paeDocUrl {entry['paeDocUrl']!r} is not an "
                                 "http(s) URL")
            pae_url = rebase_url(entry["paeDocUrl"], DEFAULT_URLS["afdb_files"],
                                 ctx.urls["afdb_files"])
            pae_dest = ctx.cache_file("afdb", f"v{version}", url_file_name(pae_url))
            ctx.ensure(pae_url, pae_dest, check_json_file)
            pae_path = str(pae_dest)
        except FetchError as exc:
            log.warning("%s: PAE not fetched (%s); the model is kept", accession, exc)
    return {"candidate": accession, "source_kind": "afdb", "accession": accession,
            "version": version, "path": str(dest), "url": url, "sha256": sha,
            "pae_path": pae_path, "chain": None, "n_bytes": n_bytes,
            **annotation_from_prediction(entry)}


def fetch_afdb_archive(name: str, ctx: FetchContext) -> FetchResult:
    """Every model of the AFDB per-proteome archive ``<afdb_bulk>/<name>.tar``.

    The archive is downloaded once into ``<cache>/afdb/bulk/``; each model member is extracted
    (through a ``.part`` file, checked by gemmi) into ``<cache>/afdb/v<N>/`` unless already
    there. An unreadable member is a failure row; the rest go on.
    """
    name = name.removesuffix(".tar")
    url = f"{ctx.urls['afdb_bulk']}/{name}.tar"
    archive = ctx.cache_file("afdb", "bulk", f"{name}.tar", what="archive name")
    ctx.ensure(url, archive, check_tar_file)
    result = FetchResult()
    with tarfile.open(archive) as tf:
        for member in tf:
            match = AFDB_TAR_MEMBER.search(member.name)
            if not member.isfile() or not match:
                continue
            acc, fragment, version = match.group(1), int(match.group(2)), match.group(3)
            candidate = acc if fragment == 1 else f"{acc}_F{fragment}"
            source = f"{url}#{member.name}"
            try:
                dest = ctx.cache_file("afdb", f"v{version}", Path(member.name).name,
                                      what="archive member")
                if not dest.is_file():
                    _extract_member(tf, member, dest)
            except Exception as exc:
                result.failures.append(failure(candidate, source,
                                               f"{name}.tar: {member.name}: {error_line(exc)}"))
                continue
            result.rows.append({"candidate": candidate, "source_kind": "afdb", "accession": acc,
                                "version": version, "path": str(dest), "url": source,
                                "sha256": file_sha256(dest), "pae_path": None, "chain": None,
                                "n_bytes": dest.stat().st_size,
                                "entry_url": AFDB_ENTRY.format(acc)})
    log.info("%s.tar: %d models, %d unreadable", name, len(result.rows), len(result.failures))
    return result


def _extract_member(tf: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    """Copy ``member`` to ``dest`` through a unique ``.part`` file, parsed by gemmi first."""
    with atomic_write(dest, unique=True) as part:
        with tf.extractfile(member) as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        parse_structure_file(part)
