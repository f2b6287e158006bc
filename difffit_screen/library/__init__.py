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
``Retry-After``, ``Content-Length`` checks; a refused connection or an unknown host fails at
once, only http(s) URLs and redirects are followed), is written to
``<file>.<pid>-<thread>.part``, checked (gemmi must parse a structure with atoms; the map header
must match its size) and only then renamed into the cache. Cache paths are made only from
checked pieces (:meth:`FetchContext.cache_file`): an accession, version or file name from a
server or a spec that is not a plain name is that candidate's failure row.
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

Modules: :mod:`.http` (the client), :mod:`.spec` (spec and base URLs), :mod:`.checks` (file
checks before the rename), :mod:`.context` (cache, URLs and client of a fetch; its rows),
:mod:`.afdb`, :mod:`.pdb`, :mod:`.local` (the sources), :mod:`.fetch` (a whole spec),
:mod:`.manifest` (the tables) and :mod:`.emdb` (target maps). The command line is
:mod:`difffit_screen.cli.fetch` and :mod:`difffit_screen.cli.fetch_map`.
"""

from __future__ import annotations

from .afdb import (
    AFDB_TAR_MEMBER,
    afdb_accessions,
    fetch_afdb_archive,
    fetch_afdb_model,
    prediction_version,
    proteome_accessions,
    rebase_url,
    select_prediction,
)
from .checks import check_json_file, check_map_file, check_tar_file, parse_structure_file
from .context import FetchContext, FetchResult, failure
from .emdb import emdb_contour, emdb_number, emdb_resolution, fetch_emdb_map
from .fetch import fetch_library
from .http import RETRY_STATUS, USER_AGENT, FetchError, HttpClient, parse_retry_after
from .local import expand_local, local_rows
from .manifest import MANIFEST_SCHEMA, unique_candidates, write_fetch_outputs
from .pdb import fetch_pdb_entry, polymer_chains
from .spec import (
    AFDB_KEYS,
    DEFAULT_URLS,
    PDB_KEYS,
    SOURCE_KINDS,
    SPEC_KEYS,
    check_spec,
    load_spec,
    resolve_urls,
)

__all__ = [
    "AFDB_KEYS", "AFDB_TAR_MEMBER", "DEFAULT_URLS", "MANIFEST_SCHEMA", "PDB_KEYS", "RETRY_STATUS",
    "SOURCE_KINDS", "SPEC_KEYS", "USER_AGENT",
    "FetchContext", "FetchError", "FetchResult", "HttpClient",
    "afdb_accessions", "check_json_file", "check_map_file", "check_spec", "check_tar_file",
    "emdb_contour", "emdb_number", "emdb_resolution", "expand_local", "failure",
    "fetch_afdb_archive", "fetch_afdb_model", "fetch_emdb_map", "fetch_library",
    "fetch_pdb_entry", "load_spec", "local_rows", "parse_retry_after", "parse_structure_file",
    "polymer_chains", "prediction_version", "proteome_accessions", "rebase_url", "resolve_urls",
    "select_prediction", "unique_candidates", "write_fetch_outputs",
]
