"""The library store: parsed candidates packed into shard Parquet files.

A library is parsed once (:func:`pack_library`) into ``N`` shard files, and every screen against
any map reads the shards (:func:`read_shard`), so a fitting job never parses PDB/mmCIF text.

One row per candidate (:data:`STORE_SCHEMA`): its per-atom arrays as list columns (``xyz`` is the
flat ``[x0, y0, z0, x1, ...]`` float32 list, Å), and its provenance (``candidate``,
``source_kind`` afdb/pdb/local, ``accession``, ``version``, ``sha256`` of the source file,
``source`` (URL or path), ``url``, ``path``, ``parent`` and ``residue_ranges`` of a domain,
``n_atoms``, ``n_residues``), its names (``name``, ``gene``, ``organism``, ``taxid`` and
``entry_url``, its AlphaFold DB / RCSB / UniProt page: from the manifest, i.e. the AFDB API, else
from the file's header, see :mod:`difffit_screen.annotations`; a domain keeps its parent's) and
other ``Atoms.meta`` keys as JSON in ``meta_json``. Shards written before the name columns
existed are read with those columns null.

Shards are balanced by atom count: candidates sorted by atoms (descending, then by packing
order) go one by one to the lightest shard (lowest index on ties), so the assignment is
deterministic. A shard that gets no candidate is still written, as an empty table.
"""

from __future__ import annotations

import functools
import heapq
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .annotations import ANNOTATION_KEYS, chain_annotation, meta_annotation, parse_taxid
from .errors import InputError
from .structures import Atoms, read_structure_annotated
from .tables import SCHEMA_VERSION, write_table

log = logging.getLogger(__name__)

PROVENANCE_KEYS = ("source_kind", "accession", "version", "sha256", "parent", "residue_ranges",
                   "url", "path")
ATOM_COLUMNS = {  # Atoms attribute (and column) -> (arrow value type, numpy dtype)
    "xyz": (pa.float32(), np.float32),
    "element": (pa.string(), str),
    "atom_name": (pa.string(), str),
    "res_name": (pa.string(), str),
    "res_seq": (pa.int32(), np.int32),
    "chain": (pa.string(), str),
    "ins_code": (pa.string(), str),
    "b_iso": (pa.float32(), np.float32),
    "polymer": (pa.bool_(), bool),
}
STORE_SCHEMA = pa.schema(
    [pa.field("candidate", pa.string(), nullable=False),
     *[pa.field(key, pa.string()) for key in PROVENANCE_KEYS],
     pa.field("source", pa.string()),
     pa.field("n_atoms", pa.int32()),
     pa.field("n_residues", pa.int32()),
     pa.field("meta_json", pa.string()),
     *[pa.field(key, pa.int64() if key == "taxid" else pa.string()) for key in ANNOTATION_KEYS],
     *[pa.field(name, pa.list_(pa.field("element", arrow)))  # Parquet's list item name
       for name, (arrow, _) in ATOM_COLUMNS.items()]],
    metadata={"difffit_screen.table": "store",
              "difffit_screen.schema_version": SCHEMA_VERSION},
)
INDEX_COLUMNS = [f.name for f in STORE_SCHEMA if f.name not in ATOM_COLUMNS]
PREPARE_MODES = ("full", "domains", "both")

Prepare = Callable[[Atoms, "str | None"], list[Atoms]]


# --- Atoms <-> Arrow ---------------------------------------------------------------------------

def count_residues(atoms: Atoms) -> int:
    """Number of residues: runs of atoms with the same chain, number and insertion code."""
    if len(atoms) == 0:
        return 0
    keys = np.rec.fromarrays([atoms.chain, atoms.res_seq, atoms.ins_code])
    return int(np.count_nonzero(keys[1:] != keys[:-1]) + 1)


def atoms_to_table(atoms_list: Sequence[Atoms]) -> pa.Table:
    """Pack candidates into a :data:`STORE_SCHEMA` table, one row each.

    ``meta`` keys in :data:`PROVENANCE_KEYS` become columns (missing ones null); other keys go to
    ``meta_json`` (their values must be JSON-serialisable).
    """
    counts = np.array([len(a) for a in atoms_list], dtype=np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    columns: dict[str, pa.Array] = {
        "candidate": pa.array([a.name for a in atoms_list], pa.string()),
        **{key: pa.array([_opt_str(a.meta.get(key)) for a in atoms_list], pa.string())
           for key in PROVENANCE_KEYS},
        "source": pa.array([a.source for a in atoms_list], pa.string()),
        "n_atoms": pa.array(counts.astype(np.int32), pa.int32()),
        "n_residues": pa.array([count_residues(a) for a in atoms_list], pa.int32()),
        "meta_json": pa.array([_extra_meta_json(a.meta) for a in atoms_list], pa.string()),
    }
    for key in ANNOTATION_KEYS:
        values = [a.meta.get(key) for a in atoms_list]
        if key == "taxid":
            values = [parse_taxid(v) for v in values]
        columns[key] = pa.array(values, STORE_SCHEMA.field(key).type)
    xyz_offsets = pa.array(np.concatenate([[0], np.cumsum(counts * 3)]).astype(np.int32))
    for name, (arrow, dtype) in ATOM_COLUMNS.items():
        parts = [np.asarray(getattr(a, name), dtype=dtype).ravel() for a in atoms_list]
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
        values = pa.array(flat.tolist() if dtype is str else flat, arrow)
        columns[name] = pa.ListArray.from_arrays(xyz_offsets if name == "xyz" else offsets,
                                                 values, type=STORE_SCHEMA.field(name).type)
    return pa.Table.from_arrays([columns[f.name] for f in STORE_SCHEMA], schema=STORE_SCHEMA)


def _opt_str(value) -> str | None:
    return None if value is None else str(value)


def _extra_meta_json(meta: dict) -> str | None:
    extra = {k: v for k, v in meta.items()
             if k not in PROVENANCE_KEYS and k not in ANNOTATION_KEYS}
    return json.dumps(extra, sort_keys=True, default=_json_default) if extra else None


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"meta value {value!r} is not JSON-serialisable")


def table_to_atoms(table: pa.Table | pa.RecordBatch) -> list[Atoms]:
    """Unpack a :data:`STORE_SCHEMA` table (or record batch) into :class:`Atoms`, one per row."""
    if table.num_rows == 0:
        return []
    flat: dict[str, np.ndarray] = {}
    bounds: dict[str, np.ndarray] = {}
    for name, (_, dtype) in ATOM_COLUMNS.items():
        col = table.column(name)
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        col = pa.concat_arrays([col]) if col.offset else col  # normalise sliced arrays
        offsets = col.offsets.to_numpy()
        values = col.values.slice(offsets[0], offsets[-1] - offsets[0])
        flat[name] = (np.array(values.to_pylist(), dtype=str) if dtype is str
                      else values.to_numpy(zero_copy_only=False).astype(dtype, copy=False))
        bounds[name] = offsets - offsets[0]
    rows = table.select([c for c in INDEX_COLUMNS if c in table.column_names]).to_pylist()
    out = []
    for i, row in enumerate(rows):
        arrays = {name: flat[name][bounds[name][i]:bounds[name][i + 1]] for name in ATOM_COLUMNS}
        meta = {key: row[key] for key in PROVENANCE_KEYS}
        if row["meta_json"]:
            meta.update(json.loads(row["meta_json"]))
        meta.update({key: row[key] for key in ANNOTATION_KEYS if row.get(key) is not None})
        out.append(Atoms(name=row["candidate"], xyz=arrays["xyz"].reshape(-1, 3),
                         element=arrays["element"], atom_name=arrays["atom_name"],
                         res_name=arrays["res_name"], res_seq=arrays["res_seq"],
                         chain=arrays["chain"], ins_code=arrays["ins_code"],
                         b_iso=arrays["b_iso"], polymer=arrays["polymer"],
                         source=row["source"] or "", meta=meta))
    return out


def write_shard(atoms_list: Sequence[Atoms], path: str | os.PathLike) -> Path:
    """Write candidates as one shard file (zstd Parquet, atomic); an empty list gives an empty
    table with :data:`STORE_SCHEMA`."""
    table = atoms_to_table(atoms_list) if atoms_list else STORE_SCHEMA.empty_table()
    return write_table(table, path)


def read_shard(path: str | os.PathLike) -> list[Atoms]:
    """Read every candidate of a shard file back into :class:`Atoms` (meta: provenance keys)."""
    return list(iter_shard(path))


def iter_shard(path: str | os.PathLike, batch_size: int = 64) -> Iterator[Atoms]:
    """Yield the candidates of a shard file, reading ``batch_size`` rows at a time."""
    for batch in iter_shard_batches(path, batch_size):
        yield from table_to_atoms(pa.Table.from_batches([batch]))


def iter_shard_checked(path: str | os.PathLike, batch_size: int = 64
                       ) -> Iterator[tuple[str, Atoms | InputError]]:
    """Yield ``(candidate, Atoms | InputError)`` for every row of a shard, each row checked.

    A row that cannot be unpacked (a coordinate list cut short, arrays of different lengths)
    or fails :func:`~difffit_screen.validate.check_atoms` is yielded as an ``InputError``
    naming ``<shard>::<candidate>`` and the reason; the other rows are unaffected. A shard
    that cannot be opened raises ``InputError``; one that breaks while being read yields one
    error for its unread rest.
    """
    from .validate import check_atoms

    batches = iter_shard_batches(path, batch_size)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except InputError:
            raise
        except Exception as exc:  # a corrupt row group: report the rest of the shard
            yield Path(path).stem, InputError(f"{path}: corrupt shard, rows not read ({exc})")
            return
        try:
            unpacked = table_to_atoms(batch)
        except Exception:  # a bad row: unpack row by row to isolate it
            unpacked = []
            for i in range(batch.num_rows):
                row = batch.slice(i, 1)
                name = str(row.column("candidate")[0])
                try:
                    n_atoms = len(row.column("element")[0])
                    n_xyz = len(row.column("xyz")[0])
                    if n_xyz != 3 * n_atoms:
                        raise ValueError(f"coordinate list has {n_xyz} values for {n_atoms} "
                                         f"atoms, {3 * n_atoms} expected")
                    unpacked += table_to_atoms(row)
                except Exception as exc:
                    yield name, InputError(f"{path}::{name}: corrupt library row "
                                           f"({type(exc).__name__}: {exc})")
        for atoms in unpacked:
            try:
                check_atoms(atoms, f"{path}::{atoms.name}", fittable=False)
            except InputError as exc:
                yield atoms.name, exc
                continue
            yield atoms.name, atoms


def iter_shard_batches(path: str | os.PathLike, batch_size: int = 64) -> Iterator[pa.RecordBatch]:
    """Yield the record batches of a shard file (raises ``InputError`` if it is not one).

    Shards written before the name columns (``ANNOTATION_KEYS``) existed are read without them.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: shard file not found")
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise InputError(f"{path}: not a Parquet shard ({exc})") from None
    names = pf.schema_arrow.names
    missing = [f.name for f in STORE_SCHEMA if f.name not in names
               and f.name not in ANNOTATION_KEYS]  # older shards have no name columns
    if missing:
        raise InputError(f"{path}: not a library shard (missing columns {missing})")
    yield from pf.iter_batches(batch_size=batch_size,
                               columns=[n for n in STORE_SCHEMA.names if n in names])


def read_shard_index(path: str | os.PathLike) -> pa.Table:
    """The provenance and name columns of a shard (no atom arrays): cheap to read."""
    names = pq.read_schema(path).names
    return pq.read_table(path, columns=[c for c in INDEX_COLUMNS if c in names])


def atoms_equal(a: Atoms, b: Atoms) -> bool:
    """True if two :class:`Atoms` hold the same name, source, meta and per-atom values."""
    if (a.name, a.source, a.meta) != (b.name, b.source, b.meta):
        return False
    return all(np.array_equal(getattr(a, name), getattr(b, name)) and
               getattr(a, name).dtype.kind == getattr(b, name).dtype.kind
               for name in ATOM_COLUMNS)


def is_shard_file(path: str | os.PathLike) -> bool:
    """True if ``path`` is a Parquet file with the store's table tag."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception:
        return False
    return meta.get(b"difffit_screen.table") == b"store"


# --- balancing ---------------------------------------------------------------------------------

def assign_shards(sizes: Sequence[int], n_shards: int) -> list[list[int]]:
    """Deal items to ``n_shards`` shards balancing the summed ``sizes``.

    Items sorted by size (descending, then index) go one by one to the lightest shard (lowest
    index on ties). Returns the item indices of each shard, ascending.
    """
    if n_shards < 1:
        raise InputError(f"number of shards must be >= 1, not {n_shards}")
    heap = [(0, shard) for shard in range(n_shards)]
    shards: list[list[int]] = [[] for _ in range(n_shards)]
    for index in sorted(range(len(sizes)), key=lambda i: (-int(sizes[i]), i)):
        load, shard = heapq.heappop(heap)
        shards[shard].append(index)
        heapq.heappush(heap, (load + int(sizes[index]), shard))
    return [sorted(s) for s in shards]


# --- packing -----------------------------------------------------------------------------------

def identity_prepare(atoms: Atoms, pae_path: str | None = None) -> list[Atoms]:
    """The default ``prepare``: the whole model is one candidate."""
    return [atoms]


def make_prepare(mode: str = "full", plddt_min: float | None = None) -> Prepare:
    """Build the ``prepare`` step of :func:`pack_library` for ``--prepare full|domains|both``.

    ``full`` keeps each model whole; ``domains`` splits each model with
    :func:`difffit_screen.domains.split_domains` (its PAE read with ``read_pae`` when fetched);
    ``both`` gives the full model, then its domains. Domains are named ``<candidate>_D<n>``
    (``<accession>_D<n>`` for AlphaFold DB models).

    pLDDT trimming is the one of :func:`difffit_screen.domains.trim_low_confidence` (whole
    residues by their mean pLDDT, non-polymer atoms kept), on models whose B-factors are pLDDT
    (:func:`predicted_from_source`). Full models are trimmed only when ``plddt_min`` is given;
    domains at ``plddt_min`` when given, else at the domain splitter's default (70).
    """
    if mode not in PREPARE_MODES:
        raise InputError(f"--prepare {mode!r} is not one of {', '.join(PREPARE_MODES)}")
    return functools.partial(_prepare, mode=mode, plddt_min=plddt_min)


def predicted_from_source(meta: dict) -> bool | None:
    """Whether a packed candidate's B-factors are pLDDT, from its provenance ``meta``.

    AlphaFold DB models (``source_kind="afdb"``) are predicted; RCSB entries (``"pdb"``) are
    not, unless their header says they are (``meta["predicted"]``, a computed model); for other
    sources ``None``: :func:`difffit_screen.domains.is_predicted_model` guesses from the header,
    names and B-factors.
    """
    kind = meta.get("source_kind")
    if kind == "afdb":
        return True
    if kind == "pdb":
        return bool(meta.get("predicted"))
    return None


def _prepare(atoms: Atoms, pae_path: str | None = None, *, mode: str,
             plddt_min: float | None) -> list[Atoms]:
    """The candidates of one model for :func:`make_prepare`'s ``mode``."""
    from .domains import read_pae, split_domains, trim_if_predicted

    predicted = predicted_from_source(atoms.meta)
    out = [trim_if_predicted(atoms, plddt_min, predicted)] if mode in ("full", "both") else []
    if mode in ("domains", "both"):
        pae = read_pae(pae_path) if pae_path else None
        kw = {"plddt_min": plddt_min} if plddt_min is not None else {}
        domains = split_domains(atoms, pae=pae, predicted=predicted, **kw)
        for i, dom in enumerate(domains, start=1):  # PDB chains share an accession
            if not dom.name.startswith(atoms.name):
                dom.name = f"{atoms.name}_D{dom.meta.get('domain_index', i)}"
        out += domains
    return out


def provenance(row: dict) -> dict:
    """The meta of a candidate from its manifest row (its names only where the row has them)."""
    meta = {key: row.get(key) for key in PROVENANCE_KEYS}
    meta["parent"] = None
    meta["residue_ranges"] = None
    meta.update({key: row[key] for key in ANNOTATION_KEYS if row.get(key) is not None})
    return meta


def candidate_meta(row: dict, header: dict | None = None) -> dict:
    """The meta of a packed candidate: the names its file's ``header`` gives, then the manifest
    row's provenance (and names, from the AFDB API, where the row has them), with ``entry_url``
    derived from the accession when no source gave one."""
    meta = {**(header or {}), **provenance(row)}
    meta.update((k, v) for k, v in meta_annotation(meta).items() if v is not None)
    return meta


def load_candidates(rows: Iterable[dict]) -> Iterator[tuple[dict, Atoms | None, str | None]]:
    """Parse manifest rows, each file once: yield ``(row, atoms, error)`` in manifest order.

    ``atoms`` is the whole file's model, or the row's chain of it, its ``meta`` holding the
    names its header gives (the chain's own for a chain row); on failure it is None and
    ``error`` says why (a row without a path gets an error of its own; the rest go on).
    """
    rows = list(rows)
    by_path: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        if row.get("path"):
            by_path.setdefault(row["path"], []).append(i)
    parsed: dict[str, tuple[Atoms | None, str | None, dict]] = {}
    remaining = {path: len(ids) for path, ids in by_path.items()}
    for row in rows:
        path = row["path"]
        if not path:  # a manifest row without a file (its fetch failed): a failure row
            yield row, None, f"manifest row {row.get('candidate')}: no file path"
            continue
        if path not in parsed:
            try:
                atoms, annotations = read_structure_annotated(path)
                parsed[path] = (annotations, atoms, None)
            except InputError as exc:
                parsed[path] = ({}, None, str(exc))
        annotations, atoms, error = parsed[path]
        remaining[path] -= 1
        if remaining[path] == 0:
            del parsed[path]
        if atoms is not None and row.get("chain"):
            atoms = atoms.subset(atoms.chain == row["chain"])
            atoms.meta = chain_annotation(annotations, row["chain"])
            if len(atoms) == 0:
                atoms, error = None, f"{path}: no atoms in chain {row['chain']}"
        yield row, atoms, error


def pack_library(manifest: pa.Table | Sequence[dict], out_paths: Sequence[str | os.PathLike],
                 prepare: Prepare | None = None) -> list[dict]:
    """Parse the manifest's candidates and write them into the shard files ``out_paths``.

    Parameters
    ----------
    manifest : pa.Table or sequence of dict
        Rows of :data:`difffit_screen.library.MANIFEST_SCHEMA`.
    out_paths : sequence of path
        The shard files to write, all of them (empty ones as empty tables).
    prepare : callable, optional
        ``prepare(atoms, pae_path) -> list[Atoms]``: each returned Atoms is one candidate (its
        ``meta`` may carry ``parent`` and ``residue_ranges``). Default: the model itself.

    Returns
    -------
    list of dict
        Failure rows (``stage="pack"``): unparsable or empty structures, prepare errors,
        repeated candidate ids.
    """
    rows = manifest.to_pylist() if isinstance(manifest, pa.Table) else list(manifest)
    out_paths = [Path(p) for p in out_paths]
    if not out_paths:
        raise InputError("pack needs at least one output shard path")
    prepare = prepare or identity_prepare
    failures: list[dict] = []
    spill_dir = out_paths[0].parent
    spill_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=spill_dir, prefix=".pack-") as tmp:
        spill = Path(tmp) / "candidates.arrow"
        try:
            sizes = _spill_candidates(rows, prepare, spill, failures)
        except OSError as exc:  # a full disk: one line naming the file
            from .outputs import OutputError

            raise OutputError(spill, exc) from None
        table = pa.ipc.open_file(pa.memory_map(str(spill))).read_all() if sizes else None
        for path, indices in zip(out_paths, assign_shards(sizes, len(out_paths)), strict=True):
            shard = table.take(indices) if indices else STORE_SCHEMA.empty_table()
            write_table(shard, path)
            log.info("%s: %d candidates, %d atoms", path, len(indices),
                     sum(sizes[i] for i in indices))
        del table
    return failures


def _spill_candidates(rows: list[dict], prepare: Prepare, spill: Path,
                      failures: list[dict]) -> list[int]:
    """Parse and prepare every candidate into an Arrow IPC file; return their atom counts."""
    sizes: list[int] = []
    seen: set[str] = set()
    with pa.OSFile(str(spill), "wb") as sink, pa.ipc.new_file(sink, STORE_SCHEMA) as writer:
        for row, atoms, error in load_candidates(rows):
            name, source = row["candidate"], row.get("url") or row.get("path")
            if atoms is None:
                failures.append(_failure(name, source, error))
                continue
            atoms.name, atoms.source = name, source
            atoms.meta = candidate_meta(row, atoms.meta)
            try:
                prepared = prepare(atoms, row.get("pae_path"))
            except Exception as exc:  # a bad candidate must not stop the library
                failures.append(_failure(name, source, f"prepare: {type(exc).__name__}: {exc}"))
                continue
            for cand in prepared:
                reason = _reject_reason(cand, seen)
                if reason:
                    failures.append(_failure(cand.name, source, reason))
                    continue
                seen.add(cand.name)
                cand.meta = {**provenance(row), **cand.meta}
                if cand.name != name and cand.meta["parent"] is None:
                    cand.meta["parent"] = name
                writer.write_table(atoms_to_table([cand]))
                sizes.append(len(cand))
    return sizes


def _reject_reason(cand: Atoms, seen: set[str]) -> str | None:
    if len(cand) == 0:
        return "no atoms left to fit"
    if cand.name in seen:
        return f"candidate id {cand.name} repeats"
    return None


def _failure(candidate: str, source: str | None, reason: str | None) -> dict:
    return {"candidate": candidate, "source": source, "stage": "pack", "reason": reason}
