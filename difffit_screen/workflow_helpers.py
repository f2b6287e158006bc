"""Helpers of the Snakemake workflow: config → file names, shard counts, library specs, shards.

The rules in ``workflow/rules/*.smk`` stay declarative: they name files and call the
``difffit-screen`` CLI. Everything that needs logic lives here, so it is unit-testable without
Snakemake, and a few glue steps run as ``python -m difffit_screen.workflow_helpers CMD``:

``write-spec``
    write the library spec JSON that ``difffit-screen fetch`` reads;
``split-library``
    assign the fetched candidates to the N shard buckets (sticky, atom-balanced: see
    :func:`assign_buckets`) and write one small key file per bucket;
``bucket-manifest``
    cut the rows of one bucket out of the library manifest for ``difffit-screen pack``;
``top-hits``
    write the first ranks of ``ranking.parquet`` as TSV;
``ranking-html``
    write the first ranks as an HTML table (the ranking in ``snakemake --report``);
``print-top``
    print the first ranks with their names and organisms (``make demo``);
``guard``
    run a submitted job's command so that a deterministic failure (exit status 2) is not
    retried (:mod:`difffit_screen.retry_guard`).

Incremental screens
-------------------
A bucket key file lists ``candidate<TAB>sha256`` of its candidates, sorted, and nothing else (a
candidate id with a line break, a tab or a backslash is written escaped,
:func:`~difffit_screen.outputs.escape_line`, here and in the assignment file, so that every
candidate keeps its one line). It
is rewritten byte for byte identical as long as its candidates are unchanged, and Snakemake, after
the ``split_library`` checkpoint has run, compares the checksum of each key file with the one it
recorded when that bucket was last packed. So adding candidates to a library re-packs and re-fits
only the buckets that received them. Buckets are *sticky*: a candidate keeps the bucket it was
given (the assignment is kept in ``<library>/shard_assignment.tsv``) and new candidates go to the
lightest bucket, heaviest first, so the buckets stay balanced by atom count.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import os
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .outputs import atomic_write, escape_line, write_text
from .params import FitParams, MapParams, Option, composite_command_options, field_options

URL_KEYS = ("afdb_api", "afdb_files", "afdb_bulk", "uniprot_api", "rcsb_files", "emdb_api",
            "emdb_files")
FETCH_URL_KEYS = ("afdb_api", "afdb_files", "afdb_bulk", "uniprot_api", "rcsb_files")
MAP_URL_KEYS = ("emdb_api", "emdb_files")
ID_COLUMNS = ("candidate", "id", "name", "entry", "accession")
HASH_COLUMNS = ("sha256", "checksum", "hash")
WEIGHT_COLUMNS = ("n_atoms", "atoms", "n_residues", "n_bytes", "bytes", "size", "file_size")
PATH_COLUMNS = ("path", "file", "local_path", "cache_path")
ASSIGNMENT_FILE = "shard_assignment.tsv"
GZIP_RATIO = 4.5  # typical size ratio of a PDB/mmCIF file to its gzip


class ConfigError(ValueError):
    """A config value the schema cannot catch; the message names the key."""


# --- config --------------------------------------------------------------------------------------

def check_config(config: Mapping[str, Any]) -> None:
    """Check what the JSON schema cannot: the cross-field rules of a screen's config.

    Raises
    ------
    ConfigError
        Naming the offending key.
    """
    map_cfg = config.get("map") or {}
    if bool(map_cfg.get("path")) == bool(map_cfg.get("emdb")):
        raise ConfigError("config key 'map': give exactly one of 'map.path' (a local MRC file) "
                          "or 'map.emdb' (an EMDB id such as EMD-1234)")
    lib = config.get("library") or {}
    if not has_library(config) and not (config.get("composite") or {}).get("enabled"):
        raise ConfigError("config key 'library': no candidates; give at least one of "
                          "'library.local', 'library.afdb.accessions', 'library.afdb.proteome' "
                          "or 'library.pdb.entries'")
    globs = [str(p) for p in lib.get("local") or [] if glob.has_magic(str(p))]
    if globs and not resolve_local_files(globs):  # a typo, not an empty screen to pack and fit
        raise ConfigError(f"config key 'library.local': {', '.join(map(repr, globs))} "
                          f"{'matches' if len(globs) == 1 else 'match'} no file")
    shards = config.get("shards") or {}
    if shards.get("candidates_per_shard") is not None and shards.get("count") is not None:
        raise ConfigError("config key 'shards': give 'shards.count' or "
                          "'shards.candidates_per_shard', not both")


def has_library(config: Mapping[str, Any]) -> bool:
    """Whether the config names library candidates (else only compositing can run)."""
    lib = config.get("library") or {}
    afdb = lib.get("afdb") or {}
    pdb = lib.get("pdb") or {}
    return bool(lib.get("local") or afdb.get("accessions") or afdb.get("accessions_file")
                or afdb.get("proteome") or afdb.get("proteome_tar") or pdb.get("entries"))


def config_error_from(exc: BaseException) -> ConfigError:
    """One line naming the key, from the error of Snakemake's ``validate`` (no schema dump).

    ``snakemake.utils.validate`` raises a ``WorkflowError`` while handling the ``jsonschema``
    error (its ``__context__``), whose text repeats the schema part that failed (tens of
    lines).
    """
    chain = [*getattr(exc, "args", ()), exc.__cause__, exc.__context__]
    found = [a for a in chain if hasattr(a, "absolute_path")]
    if not found:
        text = str(exc).strip().splitlines()
        return ConfigError(f"config: {text[0] if text else type(exc).__name__}")
    err = found[0]
    try:  # the most relevant of nested errors (anyOf, ...), as jsonschema ranks them
        from jsonschema.exceptions import best_match

        err = best_match([err, *getattr(err, "context", ())]) or err
    except ImportError:  # pragma: no cover - jsonschema comes with snakemake
        pass
    key = ".".join(str(p) for p in err.absolute_path)
    return ConfigError(f"config key '{key or '(top level)'}': {err.message}")


def job_device(config: Mapping[str, Any], gpus: int | str | None, on_cluster: bool) -> str:
    """``--device`` of a fit or composite job.

    ``fit.device`` (``auto``, ``cpu``, ``cuda``), except that a job submitted to a cluster with
    a GPU (``gpus`` > 0, ``on_cluster``) runs with ``cuda`` when ``fit.device`` is ``auto``: a
    torch without CUDA then stops the job at once with one line, instead of fitting for hours
    on the CPU of a GPU node. Locally the ``gpu`` resource only keeps fits one at a time, so
    ``auto`` stays ``auto`` (the CPU on a machine without CUDA).
    """
    device = str((config.get("fit") or {}).get("device") or "auto")
    try:
        n = int(gpus or 0)
    except (TypeError, ValueError):
        n = 0
    if device == "auto" and on_cluster and n > 0:
        return "cuda"
    return device


def resolve_local_files(patterns: Iterable[str]) -> list[str]:
    """Expand ``library.local`` globs (``~`` and ``**`` allowed) to a sorted list of files.

    A pattern that is a plain path is kept even when the file is missing, so that the fetch step
    reports it in the failures table instead of silently dropping it.
    """
    files: set[str] = set()
    for pattern in patterns:
        pattern = os.path.expanduser(str(pattern))
        if glob.has_magic(pattern):
            files.update(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        else:
            files.add(pattern)
    return sorted(files)


def library_spec(config: Mapping[str, Any]) -> dict[str, Any]:
    """The spec JSON of ``difffit-screen fetch`` for this config (local globs resolved).

    Base URLs are not part of the spec (they are passed as options), so that a mirror does not
    change the library.
    """
    lib = config.get("library") or {}
    afdb = lib.get("afdb") or {}
    pdb = lib.get("pdb") or {}
    spec: dict[str, Any] = {
        "afdb": {"accessions": sorted(set(afdb.get("accessions") or [])),
                 "accessions_file": afdb.get("accessions_file"),
                 "proteome": afdb.get("proteome"),
                 "reviewed": bool(afdb.get("reviewed", False)),
                 "pae": bool(afdb.get("pae", False))},
        "pdb": {"entries": sorted(set(pdb.get("entries") or [])),
                "unique_chains": bool(pdb.get("unique_chains", True))},
        "local": resolve_local_files(lib.get("local") or []),
    }
    if afdb.get("proteome_tar"):  # only when set: unnamed libraries keep their digest
        spec["afdb"]["proteome_tar"] = afdb["proteome_tar"]
    return spec


def tracked_local_files(config: Mapping[str, Any]) -> list[str]:
    """The ``library.local`` files that the fetch rule takes as input (so that a changed file
    is fetched again): those whose paths Snakemake reads as plain paths.

    A path with ``{`` ``}`` (wildcards), ``<`` ``>`` (path variables) or a character that is
    not printable (a line break) would stop the whole workflow; such a file is left out of the
    rule's input only. It is still in the spec (its name in ``spec.json``), so it is fetched,
    packed and fitted like the others.
    """
    return [f for f in library_spec(config)["local"]
            if f.isprintable() and not any(c in f for c in "{}<>")]


def library_spec_json(config: Mapping[str, Any]) -> str:
    """:func:`library_spec` as compact JSON (sorted keys): a rule parameter of the spec step."""
    return json.dumps(library_spec(config), sort_keys=True, separators=(",", ":"))


def spec_digest(spec: Mapping[str, Any]) -> str:
    """Short stable hash of a library spec (names an unnamed library)."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def library_name(config: Mapping[str, Any]) -> str:
    """``library.name``, else ``lib-<hash of the spec and pack options>``."""
    lib = config.get("library") or {}
    if lib.get("name"):
        return str(lib["name"])
    spec = library_spec(config)
    spec["pack"] = pack_options(config)
    return f"lib-{spec_digest(spec)}"


def library_dir(config: Mapping[str, Any]) -> str:
    """The library store of this config: ``<library.root>/<library name>``."""
    lib = config.get("library") or {}
    root = str(lib.get("root") or "resources/library").rstrip("/")
    return f"{root}/{library_name(config)}"


def library_size_hint(config: Mapping[str, Any], manifest: str | None = None) -> int | None:
    """Number of candidates known before fetching, or from an existing manifest.

    ``None`` when the library holds a proteome and no manifest was written yet.
    """
    if manifest and os.path.exists(manifest):
        import pyarrow.parquet as pq

        return pq.read_metadata(manifest).num_rows
    spec = library_spec(config)
    if spec["afdb"]["proteome"] or spec["afdb"]["accessions_file"]:
        return None
    return len(spec["local"]) + len(spec["afdb"]["accessions"]) + len(spec["pdb"]["entries"])


def n_shards(config: Mapping[str, Any], manifest: str | None = None) -> int:
    """Number of shard jobs: ``shards.count``, or the library size / ``candidates_per_shard``.

    The profile's ``set-scatter: {shard: N}`` overrides either.
    """
    shards = config.get("shards") or {}
    per = shards.get("candidates_per_shard")
    if per:
        size = library_size_hint(config, manifest)
        if size is None:
            return int(shards.get("count") or 4)
        return max(1, math.ceil(size / int(per)))
    return max(1, int(shards.get("count") or 4))


def pack_options(config: Mapping[str, Any]) -> str:
    """Options of ``difffit-screen pack`` from ``library.prepare`` / ``library.plddt_min``."""
    lib = config.get("library") or {}
    return join_options([("--prepare", lib.get("prepare") or None),
                         ("--plddt-min", lib.get("plddt_min"))])


def url_options(config: Mapping[str, Any], keys: Sequence[str]) -> str:
    """``--afdb-api URL ...`` options for the configured base URLs among ``keys``."""
    urls = config.get("urls") or {}
    return join_options((f"--{k.replace('_', '-')}", str(urls[k])) for k in keys if urls.get(k))


def extra_arguments(extra: Any, key: str = "extra") -> list[str]:
    """The arguments of a config's ``extra`` key: a string split as a shell would
    (:func:`shlex.split`: quotes group, nothing runs), or a list of arguments as they are.

    Raises
    ------
    ConfigError
        ``extra`` is a string that does not split (an unclosed quote), naming ``key``.
    """
    if not extra:
        return []
    if isinstance(extra, list | tuple):
        return [str(a) for a in extra]
    try:
        return shlex.split(str(extra))
    except ValueError as exc:
        raise ConfigError(f"config key {key!r}: {exc} in {str(extra)!r}") from None


def join_options(pairs: Iterable[tuple[str, Any]], extra: Any = None,
                 key: str = "extra") -> str:
    """``--flag value ...`` of the ``(flag, value)`` pairs whose value is set, then ``extra``,
    each argument quoted for the shell (:func:`shlex.quote`).

    None (and False) leave the option out, so that the command's default holds; True is the
    flag alone (an on/off option); a list or tuple is its values; ``extra`` (a config's
    ``extra`` key, named ``key`` in errors) is split into arguments by
    :func:`extra_arguments`. No value can end the command or start another: a ``;`` in
    ``extra`` reaches the command as an argument.
    """
    opts: list[str] = []
    for flag, value in pairs:
        if value is None or value is False:
            continue
        opts.append(flag)
        if isinstance(value, list | tuple):
            opts += [str(v) for v in value]
        elif value is not True:
            opts.append(str(value))
    opts += extra_arguments(extra, key)
    return " ".join(shlex.quote(o) for o in opts)


def config_pairs(section: Mapping[str, Any] | None, options: Iterable[Option],
                 exclude: Sequence[str] = ()) -> list[tuple[str, Any]]:
    """``(flag, value)`` of the options that a config section sets (:mod:`difffit_screen.params`
    field metadata: an option's ``config`` key), in the options' order."""
    section = section or {}
    return [(o.flag, section.get(o.config)) for o in options
            if o.config and o.config not in exclude]


def fit_options(config: Mapping[str, Any]) -> str:
    """Options of ``difffit-screen fit`` from the ``fit`` section (unset ones keep CLI defaults).

    The keys are the config keys of :class:`~difffit_screen.params.FitParams` fields.
    ``--device`` is not among them: it depends on the job (:func:`job_device`).
    """
    fit = config.get("fit") or {}
    return join_options(config_pairs(fit, field_options(FitParams), exclude=("device",)),
                        fit.get("extra"), "fit.extra")


def map_options(config: Mapping[str, Any]) -> str:
    """``--threshold`` / ``--resolution`` options of ``difffit-screen prepare-map`` (the
    ``map`` section's keys of :class:`~difffit_screen.params.MapParams` fields)."""
    m = config.get("map") or {}
    return join_options(config_pairs(m, field_options(MapParams)), m.get("extra"), "map.extra")


def composite_targets(config: Mapping[str, Any]) -> list[str]:
    """Target files of the ``composite`` job, or none when ``composite.enabled`` is false."""
    if not (config.get("composite") or {}).get("enabled"):
        return []
    return ["results/composite/assembly.cif", "results/composite/residual.mrc",
            "results/composite/rounds.parquet"]


def composite_subunits(config: Mapping[str, Any]) -> list[str]:
    """Subunit files of the ``composite`` section: its paths and globs, expanded and sorted."""
    comp = config.get("composite") or {}
    out: list[str] = []
    for item in comp.get("subunits") or []:
        matches = sorted(glob.glob(str(item)))
        out += matches if matches else [str(item)]  # a missing file: Snakemake names it
    return out


def composite_options(config: Mapping[str, Any]) -> str:
    """Options of ``difffit-screen composite`` from the ``composite`` and ``map`` sections.

    The map's ``threshold`` / ``resolution`` are the screen's (``--device`` comes from
    :func:`job_device`); ``copies`` ``{NAME: K}`` becomes ``--copies NAME=K ...``; unset keys
    keep the command's defaults (:func:`difffit_screen.params.composite_command_options`).
    """
    comp = config.get("composite") or {}
    maps, own, search = composite_command_options()
    copies = [f"{name}={int(k)}" for name, k in sorted((comp.get("copies") or {}).items())]
    pairs = [*config_pairs(config.get("map"), maps), *config_pairs(comp, own + search),
             ("--copies", copies or None)]
    return join_options(pairs, comp.get("extra"), "composite.extra")


def emdb_id(config: Mapping[str, Any]) -> str | None:
    """The map's EMDB id normalised to ``EMD-<digits>``, or None."""
    value = (config.get("map") or {}).get("emdb")
    if not value:
        return None
    value = str(value).upper().replace("_", "-")
    digits = value.removeprefix("EMD-")
    if not digits.isdigit():
        raise ConfigError(f"config key 'map.emdb': {value!r} is not an EMDB id like EMD-1234")
    return f"EMD-{digits}"


def write_spec(spec: Mapping[str, Any] | str, out: str | os.PathLike) -> None:
    """Write the library spec JSON (sorted keys, so an unchanged spec gives the same bytes)."""
    if isinstance(spec, str):
        spec = json.loads(spec)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")


# --- shards --------------------------------------------------------------------------------------

def _pick(columns: Sequence[str], names: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in columns}
    for name in names:
        if name in lower:
            return lower[name]
    return None


def manifest_keys(manifest: str | os.PathLike) -> list[dict[str, Any]]:
    """One ``{"key", "candidate", "sha256", "weight"}`` per manifest row.

    ``key`` identifies a candidate's content (its id, and its sha256 when the manifest has one);
    ``candidate`` is the id as written in the key and assignment files (one line, see
    :func:`~difffit_screen.outputs.escape_line`);
    ``weight`` is its atom count when known, else the file size (times :data:`GZIP_RATIO` for a
    ``.gz`` file, as the size of a structure file is about proportional to its atoms), else 1;
    it is used for balancing.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(manifest)
    cols = table.column_names
    id_col = _pick(cols, ID_COLUMNS) or _pick(cols, PATH_COLUMNS)
    if id_col is None:
        raise ValueError(f"{manifest}: no candidate id column (looked for {ID_COLUMNS})")
    sha_col = _pick(cols, HASH_COLUMNS)
    weight_col = _pick(cols, WEIGHT_COLUMNS)
    path_col = _pick(cols, PATH_COLUMNS)
    rows = []
    for r in table.to_pylist():
        cand = escape_line(r[id_col])
        sha = str(r[sha_col]) if sha_col and r.get(sha_col) else ""
        weight = r.get(weight_col) if weight_col else None
        path = str(r[path_col]) if path_col and r.get(path_col) else ""
        if weight is None and path and os.path.exists(path):
            weight = os.path.getsize(path)
        if weight and weight_col in (None, "n_bytes", "bytes", "size", "file_size") \
                and path.endswith(".gz"):
            weight *= GZIP_RATIO  # file size stands in for the atom count: undo compression
        rows.append({"key": f"{cand}\t{sha}", "candidate": cand, "sha256": sha,
                     "weight": float(weight) if weight else 1.0})
    return rows


def assign_buckets(rows: Sequence[Mapping[str, Any]], n: int,
                   previous: Mapping[str, int] | None = None) -> dict[str, int]:
    """Assign candidates to ``n`` buckets (0-based), balanced by weight and sticky.

    Candidates in ``previous`` keep their bucket (when it is < ``n``); the others are placed
    heaviest first into the currently lightest bucket (LPT), ties broken by candidate id, so the
    result is deterministic. A candidate is identified by its id alone here, so a candidate whose
    file changed keeps its bucket (and that bucket is re-fitted because its key file changed).
    """
    previous = previous or {}
    load = [0.0] * n
    out: dict[str, int] = {}
    fresh = []
    for r in rows:
        b = previous.get(r["candidate"])
        if b is not None and 0 <= b < n and r["candidate"] not in out:
            out[r["candidate"]] = b
            load[b] += r["weight"]
        elif r["candidate"] not in out:
            fresh.append(r)
    for r in sorted(fresh, key=lambda r: (-r["weight"], r["candidate"])):
        if r["candidate"] in out:
            continue
        b = min(range(n), key=lambda i: (load[i], i))
        out[r["candidate"]] = b
        load[b] += r["weight"]
    return out


def read_assignment(path: str | os.PathLike, n: int) -> dict[str, int]:
    """The sticky assignment written by :func:`split_library` (empty if absent or for another n)."""
    path = Path(path)
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    if not lines or lines[0] != f"# shards\t{n}":
        return {}
    out = {}
    for line in lines[1:]:
        if line and not line.startswith("#"):
            cand, bucket = line.rsplit("\t", 1)
            out[cand] = int(bucket)
    return out


def split_library(manifest: str | os.PathLike, outs: Sequence[str | os.PathLike],
                  assignment: str | os.PathLike | None = None) -> list[int]:
    """Write one bucket key file per output (``candidate<TAB>sha256`` lines, sorted).

    Returns the number of candidates per bucket.
    """
    n = len(outs)
    rows = manifest_keys(manifest)
    if assignment is None:
        assignment = Path(outs[0]).parent.parent / ASSIGNMENT_FILE
    previous = read_assignment(assignment, n)
    buckets = assign_buckets(rows, n, previous)
    keys: list[set[str]] = [set() for _ in range(n)]
    for r in rows:
        keys[buckets[r["candidate"]]].add(r["key"])
    for out, ks in zip(outs, keys, strict=True):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("".join(k + "\n" for k in sorted(ks)))
    current = {r["candidate"] for r in rows}
    keep = {c: b for c, b in {**previous, **buckets}.items() if c in current}
    write_text(assignment,
               f"# shards\t{n}\n" + "".join(f"{c}\t{b}\n" for c, b in sorted(keep.items())))
    return [len(k) for k in keys]


def bucket_manifest(manifest: str | os.PathLike, bucket: str | os.PathLike,
                    out: str | os.PathLike) -> int:
    """Write the manifest rows of one bucket (as listed in its key file); returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    wanted = {line for line in Path(bucket).read_text().splitlines() if line}
    table = pq.read_table(manifest)
    rows = manifest_keys(manifest)
    mask = pa.array([r["key"] in wanted for r in rows], type=pa.bool_())
    sub = table.filter(mask)
    with atomic_write(out) as tmp:
        pq.write_table(sub, tmp, compression="zstd")
    return sub.num_rows


def shard_dirs(paths: Iterable[str]) -> list[str]:
    """The shard folders of per-shard files (``results/shards/<i>-of-<n>/fits.parquet``)."""
    return [os.path.dirname(str(p)) for p in paths]


TOP_HIT_COLUMNS = ("rank", "candidate", "score", "zscore", "qvalue", "hits", "fit_ok",
                   "inside_fraction", "correlation", "n_atoms", "n_residues", "accession",
                   "name", "organism", "gene", "residue_ranges", "url", "matrix")
"""Columns of ``top_hits.tsv`` and ``ranking.html``; ``matrix`` is the pose (row-major 3x4
``[R | t]``, input coordinates to the map frame) as 12 comma-separated numbers."""


def read_top_ranks(ranking: str | os.PathLike, n: int) -> tuple[list[str], list[dict], int]:
    """The :data:`TOP_HIT_COLUMNS` of the first ``n`` ranks of ``ranking.parquet``: the columns
    present, the rows, and the number of candidates ranked."""
    import pyarrow.parquet as pq

    table = pq.read_table(ranking)
    cols = [c for c in TOP_HIT_COLUMNS if c in table.column_names]
    return cols, table.select(cols).slice(0, n).to_pylist(), table.num_rows


def format_value(v: Any) -> str:
    """A table cell: empty for None, 4 significant digits for a float, a list (the pose
    ``matrix``) as comma-separated numbers of 6 significant digits."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return ",".join(f"{x:.6g}" if isinstance(x, float) else str(x) for x in v)
    return str(v)


def write_top_hits(ranking: str | os.PathLike, out: str | os.PathLike, n: int = 25) -> int:
    """Write the first ``n`` ranks as TSV (for Snakemake's HTML report); returns rows written.

    A cell keeps to its field and line (:func:`~difffit_screen.outputs.escape_line`)."""
    cols, rows, _ = read_top_ranks(ranking, n)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as fh:
        fh.write("\t".join(cols) + "\n")
        for r in rows:
            fh.write("\t".join(escape_line(format_value(r[c])) for c in cols) + "\n")
    return len(rows)


SUMMARY_COLUMNS = ("rank", "candidate", "name", "organism", "score", "qvalue", "hits")
"""Columns of :func:`format_top_ranks` (what ``make demo`` prints)."""


def format_top_ranks(ranking: str | os.PathLike, n: int = 10, width: int = 32) -> str:
    """The first ``n`` ranks as a plain-text table (names and organisms cut to ``width``)."""
    import pyarrow.parquet as pq

    table = pq.read_table(ranking)
    cols = [c for c in SUMMARY_COLUMNS if c in table.column_names]
    rows = table.select(cols).slice(0, n).to_pylist()
    cells = [[format_value(r[c]) for c in cols] for r in rows]
    cells = [[v if len(v) <= width else v[:width - 1] + "…" for v in row] for row in cells]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
              for row in cells]
    return "\n".join(lines) + f"\n({len(rows)} of {table.num_rows} candidates)"


RANKING_HTML_ROWS = 1000
"""Most rows of the ranking table in ``snakemake --report`` (the Parquet file has them all)."""


def write_ranking_html(ranking: str | os.PathLike, out: str | os.PathLike,
                       n: int = RANKING_HTML_ROWS) -> int:
    """Write the first ``n`` ranks as a self-contained HTML table; returns the rows written.

    Snakemake's report shows an HTML result in place, while a Parquet or TSV file is only
    offered as text; this is the ranking as the report shows it.
    """
    import html

    cols, rows, total = read_top_ranks(ranking, n)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(format_value(r[c]))}</td>"
                                       for c in cols) + "</tr>" for r in rows)
    note = (f"first {len(rows)} of {total} candidates; all of them are in "
            "results/ranking.parquet" if total > len(rows) else f"all {total} candidates")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Ranking</title><style>"
        "body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
        "th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "th{background:#eee;position:sticky;top:0}</style></head><body>"
        f"<p>Ranking of the screen, best first ({note}).</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"
        "</body></html>\n")
    return len(rows)


# --- command line (the rules' glue steps) ------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m difffit_screen.workflow_helpers CMD ...``: the workflow's glue steps."""
    p = argparse.ArgumentParser(prog="python -m difffit_screen.workflow_helpers",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("write-spec", help="write the library spec JSON")
    s.add_argument("--spec", required=True, help="the spec as a JSON string")
    s.add_argument("--out", required=True)
    s = sub.add_parser("split-library", help="assign candidates to shard buckets")
    s.add_argument("--manifest", required=True)
    s.add_argument("--assignment", default=None, help="sticky assignment file")
    s.add_argument("--out", nargs="+", required=True, help="one key file per bucket")
    s = sub.add_parser("bucket-manifest", help="the manifest rows of one bucket")
    s.add_argument("--manifest", required=True)
    s.add_argument("--bucket", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("top-hits", help="first ranks as TSV")
    s.add_argument("--ranking", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("-n", type=int, default=25)
    s = sub.add_parser("ranking-html", help="first ranks as an HTML table")
    s.add_argument("--ranking", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("-n", type=int, default=RANKING_HTML_ROWS)
    s = sub.add_parser("print-top", help="print the first ranks and where the report is")
    s.add_argument("--ranking", required=True)
    s.add_argument("--report", help="the report's index.html (its path is printed)")
    s.add_argument("-n", type=int, default=10)
    s = sub.add_parser("guard", help="run a job's command; no retry after exit status 2")
    s.add_argument("--attempt", type=int, required=True, help="the job's attempt (1 first)")
    s.add_argument("--log", required=True, help="the job's log file")
    s.add_argument("command", nargs=argparse.REMAINDER, help="-- the command")
    args = p.parse_args(argv)
    if args.cmd == "guard":
        from .retry_guard import run_guarded

        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            p.error("guard: no command after --")
        return run_guarded(command, args.attempt, args.log)
    if args.cmd == "write-spec":
        write_spec(args.spec, args.out)
    elif args.cmd == "split-library":
        counts = split_library(args.manifest, args.out, args.assignment)
        print(f"split {sum(counts)} candidates into {len(counts)} buckets: {counts}",
              file=sys.stderr)
    elif args.cmd == "bucket-manifest":
        n = bucket_manifest(args.manifest, args.bucket, args.out)
        print(f"{args.bucket}: {n} manifest rows", file=sys.stderr)
    elif args.cmd == "top-hits":
        write_top_hits(args.ranking, args.out, args.n)
    elif args.cmd == "ranking-html":
        write_ranking_html(args.ranking, args.out, args.n)
    elif args.cmd == "print-top":
        print(format_top_ranks(args.ranking, args.n))
        if args.report:
            print(f"report: {os.path.abspath(args.report)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
