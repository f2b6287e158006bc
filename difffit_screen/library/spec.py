"""The library spec (JSON or YAML): its keys, checks, and the services' base URLs."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import InputError
from .http import error_line, is_http_url

__all__ = ["AFDB_KEYS", "DEFAULT_URLS", "PDB_KEYS", "SOURCE_KINDS", "SPEC_KEYS", "check_spec",
           "load_spec", "resolve_urls"]

DEFAULT_URLS = {
    "afdb_api": "https://alphafold.ebi.ac.uk/api",
    "afdb_files": "https://alphafold.ebi.ac.uk/files",
    "afdb_bulk": "https://ftp.ebi.ac.uk/pub/databases/alphafold/latest",
    "uniprot_api": "https://rest.uniprot.org",
    "rcsb_files": "https://files.rcsb.org",
    "emdb_api": "https://www.ebi.ac.uk/emdb/api",
    "emdb_files": "https://ftp.ebi.ac.uk/pub/databases/emdb",
}

SOURCE_KINDS = ("afdb", "pdb", "local")

SPEC_KEYS = {"afdb", "pdb", "local", "urls"}

AFDB_KEYS = {"accessions", "accessions_file", "proteome", "proteome_tar", "reviewed", "format",
             "pae"}

PDB_KEYS = {"entries", "unique_chains"}


def load_spec(path: str | os.PathLike) -> dict:
    """Read and check a library spec (JSON or YAML; see :mod:`difffit_screen.library`).

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
        raise InputError(f"{path}: not JSON/YAML ({error_line(exc)})") from None
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
        if not isinstance(value, str) or not is_http_url(value) or not value.isprintable():
            raise InputError(f"base URL {key} = {value!r} is not an http(s) URL")
    return {k: v.rstrip("/") for k, v in urls.items()}
