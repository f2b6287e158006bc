"""Fitting a set of candidates into one prepared map: search, cluster, refine, score, tabulate.

For each candidate:

1. the fitted atom set (``all``, ``backbone`` or ``ca``) is centred on its centroid, and up to
   ``max_search_atoms`` of its atoms, evenly spaced along the chain, are used for the search;
2. ``positions x rotations`` start placements (:mod:`~difffit_screen.placements`, from ``seed``)
   are optimised together with Adam on the combined smoothed loss volume
   (:mod:`~difffit_screen.optimise`; on the CPU every placement's whole search runs in the
   compiled kernel, on CUDA one torch step covers a batch); candidates are batched (bounded
   by ``max_samples`` atom samples a step), which never changes a candidate's fits;
3. the final poses are clustered at ``cluster_shift`` Å / ``cluster_angle`` degrees
   (:mod:`~difffit_screen.cluster`); a cluster's size is its ``hits``;
4. the best ``refine_top`` cluster representatives (times ``ceil(room)``, at most
   ``room_cap``: see 5) are refined locally with all fitted atoms on
   the unsmoothed map (the mean-density objective of ChimeraX ``fitmap``; on the CPU's
   compiled search whatever the device), re-clustered, scored (:mod:`~difffit_screen.scores`)
   and the best ``refine_top`` written as rows of the ``fits`` table;
5. the search is widened by the candidate's *room*, ``(Rg_footprint / Rg_candidate)^3``, about
   how many candidate-sized places the density holds (a chain in the density of a complex, a
   subunit of an oligomer or filament): each is a basin that some start must reach, and the
   smoothed search loss can rank the right one below wrong ones. So ``ceil(room)`` (1 to
   ``room_cap``) times ``refine_top`` clusters are refined, and a deeper search, decided for
   each candidate on its own (never by how other candidates of the run scored, so that a
   candidate gets the same search alone, in any shard or in any library), runs when the best
   cluster fits (``fit_ok``) with fewer than ``deepen_hits`` hits (a best pose that the search
   found once or a few times, not converged on) and the candidate is not much bigger than the
   density (room ``>= deepen_ratio``): it starts from ``ceil(room)`` times as many positions
   and ``deepen_factor`` times as many rotations (second seeded sets), and steps 3-4 are
   redone on all its placements (refining ``1 + deepen_factor`` times ``refine_top``
   clusters, reporting the best ``refine_top``). Measured in ``benchmarks/bench_robustness.py``
   over 20 random start poses and seeds per case and contour: a single chain among its
   neighbours at a high contour has a basin that about 1 start in 3,500 reaches; a domain in
   a segment that it fills is found by dozens of starts and is never searched again.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
import traceback
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
from scipy.spatial.transform import Rotation

from .annotations import candidate_accession, row_annotation
from .cluster import cluster_poses
from .devices import (
    Device,
    cpu_threads,
    describe_device,
    format_device,
    label_device,
    resolve_device,
)
from .domains.plddt import confident_fraction
from .errors import InputError
from .maps import (
    MIN_ENCLOSED_FRACTION,
    VOLUME_PER_ATOM_A3,
    PreparedMap,
    contour_advice,
    file_sha256,
)
from .optimise import VolumeSampler, optimise_placements
from .outputs import (
    UniqueNames,
    atomic_write,
    lock_output_dir,
    prepare_output_dir,
    remove_previous_outputs,
    safe_name,
    software_versions,
    write_text,
)
from .params import FitParams
from .placements import sample_positions, sample_rotations
from .progress import make_reporter
from .scores import FootprintCorrelation, score_atoms
from .significance import add_significance, read_null_summary
from .store import predicted_from_source
from .structures import (
    Atoms,
    atomic_numbers,
    candidate_name,
    is_structure_file,
    read_structure,
    select_atoms,
    simulate_atom_weights,
    write_structure,
)
from .tables import (
    FAILURES_SCHEMA,
    FITS_SCHEMA,
    rank_candidates,
    table_from_rows,
    write_table,
)
from .validate import MIN_ATOMS, check_atoms

log = logging.getLogger(__name__)

SCORE_COLUMN = {"segment": "footprint_cc", "whole": "local_cc"}
"""The ranking ``score`` of each map kind (see :mod:`difffit_screen.scores`)."""


@dataclass
class FitOutcome:
    """Result rows of a run: ``fits`` rows, ``failures`` rows and timing."""

    fits: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    search_samples: int = 0
    search_seconds: float = 0.0


@dataclass
class _Prepared:
    """A candidate ready for the search."""

    atoms: Atoms
    fit_mask: np.ndarray
    centroid: np.ndarray
    centred: np.ndarray  # (n_fit, 3)
    search: np.ndarray  # (n_search, 3) centred
    rg: float
    weights: np.ndarray  # (n_fit,) simulated weights
    z: np.ndarray  # (n_fit,) atomic numbers


# --- candidates ----------------------------------------------------------------------------

def iter_candidates(inputs: Iterable[str], params: FitParams) -> Iterator[tuple[str, str, object]]:
    """Yield ``(name, source, Atoms | InputError)`` for structure files, folders, globs and shards.

    Folders contribute their structure files (sorted, not recursive); ``.parquet`` inputs are
    library store shards (:func:`difffit_screen.store.read_shard`), whose candidates get the
    source ``"<shard>::<candidate>"``. Unreadable inputs are yielded as :class:`InputError`.
    """
    names = UniqueNames()

    def unique(name: str) -> str:
        new = names(name)
        if new != name:
            log.warning("candidate name %s is used twice; the second is called %s", name, new)
        return new

    for item in inputs:
        p = Path(item)
        if p.suffix == ".parquet":
            from .store import iter_shard_checked

            try:
                for member, atoms in iter_shard_checked(p):
                    name = unique(member)
                    if isinstance(atoms, Exception):
                        yield name, f"{p}::{member}", atoms
                        continue
                    atoms.name = name
                    atoms.source = f"{p}::{atoms.name}"
                    yield name, atoms.source, atoms
            except InputError as exc:
                yield unique(p.stem), str(p), exc
            continue
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and is_structure_file(f))
            if not files:
                yield unique(p.name), str(p), InputError(f"{p}: folder holds no PDB/mmCIF files")
        elif p.exists():
            files = [p]
        else:
            matches = sorted(glob.glob(item))
            files = [Path(m) for m in matches if is_structure_file(m)]
            if not files:
                yield unique(candidate_name(p)), str(p), InputError(
                    f"{p}: no such structure file")
        for f in files:
            name = unique(candidate_name(f))
            try:
                atoms = read_structure(f, name=name, keep_hydrogens=params.keep_hydrogens,
                                       keep_waters=params.keep_waters,
                                       keep_ligands=params.keep_ligands)
            except InputError as exc:
                yield name, str(f), exc
                continue
            except Exception as exc:  # never lose the screen to one odd file
                yield name, str(f), InputError(f"{f}: cannot read structure "
                                               f"({type(exc).__name__}: {exc})")
                continue
            yield name, str(f), atoms


def count_candidates(inputs: Iterable[str]) -> int | None:
    """Candidates that ``inputs`` (files, folders, globs, library shards) will yield, or None.

    Shards are counted from their Parquet metadata (one row per candidate), folders and globs
    by their structure files; cheap, so that the progress lines can show a total and an ETA.
    """
    total = 0
    try:
        for item in inputs:
            p = Path(item)
            if p.suffix == ".parquet":
                import pyarrow.parquet as pq

                total += pq.read_metadata(p).num_rows if p.is_file() else 1
            elif p.is_dir():
                total += max(1, sum(1 for f in p.iterdir() if f.is_file()
                                    and is_structure_file(f)))
            elif p.exists():
                total += 1
            else:
                total += max(1, sum(1 for m in glob.glob(item) if is_structure_file(m)))
    except Exception:  # a count is a nicety: never fail the run for it
        return None
    return total


def prepare_candidate(atoms: Atoms, prep: PreparedMap, params: FitParams) -> _Prepared:
    """Select, centre and subsample a candidate's atoms; raise :class:`InputError` if unusable
    (:func:`~difffit_screen.validate.check_atoms`: non-finite coordinates, too few atoms, a
    degenerate spread; no atoms in the atom set; far bigger than the map)."""
    check_atoms(atoms, atoms.source or atoms.name)
    mask = select_atoms(atoms, params.atoms)
    n = int(mask.sum())
    if n == 0:
        raise InputError(f"{atoms.source or atoms.name}: no atoms in atom set '{params.atoms}'")
    if n < MIN_ATOMS:
        raise InputError(f"{atoms.source or atoms.name}: too few atoms to fit in atom set "
                         f"'{params.atoms}' ({n}; at least {MIN_ATOMS} needed)")
    xyz = atoms.xyz[mask].astype(np.float64)
    centroid = xyz.mean(0)
    centred = xyz - centroid
    rg = float(np.sqrt((centred**2).sum(1).mean()))
    box = prep.raw.shape_xyz * prep.raw.voxel_size
    diag = float(np.linalg.norm(box))
    if rg > diag:
        raise InputError(
            f"{atoms.source or atoms.name}: candidate is far bigger than the map (radius of "
            f"gyration {rg:.0f} Å, map box {box[0]:.0f} x {box[1]:.0f} x {box[2]:.0f} Å)")
    if n > params.max_search_atoms:
        pick = np.unique(np.linspace(0, n - 1, params.max_search_atoms).round().astype(int))
        search = centred[pick]
    else:
        search = centred
    elements = atoms.element[mask]
    return _Prepared(atoms, mask, centroid, centred, search, max(rg, 3.0),
                     simulate_atom_weights(xyz, elements, prep.resolution),
                     atomic_numbers(elements))


# --- the search ----------------------------------------------------------------------------

def _search_batch(batch: list[_Prepared], sampler: VolumeSampler, starts_pos: np.ndarray,
                  starts_rot: np.ndarray, params: FitParams) -> list:
    """Optimise every start placement of every candidate in ``batch``; returns PoseBatch each."""
    n_max = max(len(c.search) for c in batch)
    coords = np.zeros((len(batch), n_max, 3), np.float32)
    weights = np.zeros((len(batch), n_max), np.float32)
    for b, c in enumerate(batch):
        coords[b, : len(c.search)] = c.search
        weights[b, : len(c.search)] = 1.0
    n_pos, n_rot = len(starts_pos), len(starts_rot)
    per = n_pos * n_rot
    rot0 = np.tile(starts_rot, (n_pos, 1, 1)).astype(np.float32)
    trans0 = np.repeat(starts_pos, n_rot, axis=0).astype(np.float32)
    total = per * len(batch)
    chunk = max(1, params.max_samples // n_max)
    results: list[list] = [[] for _ in batch]
    rg = np.array([c.rg for c in batch])
    for lo in range(0, total, chunk):
        k = np.arange(lo, min(total, lo + chunk))
        owner = k // per
        local = k % per
        lr_rot = (params.lr_trans / rg[owner]).astype(np.float32)
        out = optimise_placements(sampler, coords, weights, owner, rot0[local], trans0[local],
                                  params.iterations, params.lr_trans, lr_rot)
        for b in np.unique(owner):
            sel = owner == b
            results[b].append((out.rot[sel], out.trans[sel], out.loss[sel]))
    merged = []
    for parts in results:
        merged.append(tuple(np.concatenate([p[i] for p in parts]) for i in range(3)))
    return merged


def _refine(cand: _Prepared, sampler: VolumeSampler, rot: np.ndarray, trans: np.ndarray,
            params: FitParams) -> tuple[np.ndarray, np.ndarray]:
    """Refine ``(K, 3, 3)``/``(K, 3)`` poses with all fitted atoms on the unsmoothed map."""
    if params.refine_iterations <= 0 or len(rot) == 0:
        return rot, trans
    coords = np.asarray(cand.centred, np.float32)[None]
    weights = np.ones((1, len(cand.centred)), np.float32)
    k = len(rot)
    out = optimise_placements(
        sampler, coords, weights, np.zeros(k, np.int64),
        np.asarray(rot, np.float32), np.asarray(trans, np.float32),
        params.refine_iterations, params.refine_lr,
        np.full(k, params.refine_lr / cand.rg, np.float32), final_lr_fraction=0.02,
        threads=1)  # a few placements: in this thread, not queued behind the search
    return out.rot, out.trans


def _pose_rmsd(centred: np.ndarray, r1: np.ndarray, t1: np.ndarray, r2: np.ndarray,
               t2: np.ndarray) -> float:
    diff = centred @ (r1 - r2).T + (t1 - t2)
    return float(np.sqrt((diff**2).sum(1).mean()))


def _rows_for_candidate(cand: _Prepared, poses: tuple, prep: PreparedMap,
                        refine_sampler: VolumeSampler, footprint: FootprintCorrelation,
                        params: FitParams, n_refine: int | None = None) -> list[dict]:
    """Cluster, refine the best ``n_refine`` (default ``refine_top``) clusters by search loss,
    re-cluster and score them; return the best ``refine_top`` as ``fits`` rows."""
    rot, trans, loss = poses
    labels, leaders = cluster_poses(rot, trans, -loss, params.cluster_shift, params.cluster_angle)
    hits = np.bincount(labels, minlength=len(leaders))
    top = leaders[: n_refine or params.refine_top]
    r_rot, r_trans = _refine(cand, refine_sampler, rot[top], trans[top], params)
    # refined representatives may converge onto each other: merge them, summing hits
    rows = []
    for j, lead in enumerate(top):
        xyz = cand.centred @ r_rot[j].T + r_trans[j]
        s = score_atoms(prep, xyz, cand.weights)
        s.update(footprint.score_fit(xyz, cand.z))
        s["score"] = s[SCORE_COLUMN[params.map_kind]]
        s.update(rot=r_rot[j], trans=r_trans[j], hits=int(hits[j]), search_loss=float(loss[lead]),
                 refine_shift=_pose_rmsd(cand.centred, rot[lead], trans[lead], r_rot[j],
                                         r_trans[j]))
        rows.append(s)
    key = np.array([(r["inside_fraction"] >= params.min_inside) * 10.0 + r["score"] for r in rows])
    labels2, leaders2 = cluster_poses(np.array([r["rot"] for r in rows]),
                                      np.array([r["trans"] for r in rows]), key,
                                      params.cluster_shift, params.cluster_angle)
    out = []
    atoms = cand.atoms
    n_res = len(set(zip(atoms.chain.tolist(), atoms.res_seq.tolist(), atoms.ins_code.tolist(),
                        strict=True)))
    confident = confident_fraction(atoms, predicted_from_source(atoms.meta or {}))
    kept = leaders2[: params.refine_top]
    quats = Rotation.from_matrix(np.array([rows[lead]["rot"] for lead in kept])).as_quat()
    for rank, lead in enumerate(kept, start=1):
        r = rows[lead]
        merged_hits = int(sum(rows[i]["hits"] for i in np.flatnonzero(labels2 == rank - 1)))
        rmat = r["rot"]
        t = r["trans"] - rmat @ cand.centroid
        matrix = np.hstack([rmat, t[:, None]])
        meta = atoms.meta or {}
        out.append({
            "candidate": atoms.name, "cluster_rank": rank, "hits": merged_hits,
            "n_starts": len(rot),
            "score": r["score"], "footprint_cc": r["footprint_cc"], "local_cc": r["local_cc"],
            "mean_density": r["mean_density"], "overlap": r["overlap"],
            "correlation": r["correlation"], "cam": r["cam"],
            "inside_fraction": r["inside_fraction"], "search_loss": r["search_loss"],
            "refine_shift": r["refine_shift"],
            "fit_ok": bool(r["inside_fraction"] >= params.min_inside),
            "quat_xyzw": quats[rank - 1],
            "translation": t, "centroid_xyz": r["trans"], "matrix": matrix.ravel(),
            "n_atoms": len(cand.centred), "n_residues": n_res,
            "confident_fraction": confident, "seed": params.seed,
            "source": atoms.source, "accession": candidate_accession(meta, atoms.name),
            "parent": meta.get("parent"), "residue_ranges": meta.get("residue_ranges"),
            **row_annotation(meta),
        })
    return out


class _Batcher:
    """Searches prepared candidates in memory-bound batches and turns their poses into rows.

    Candidates are added one by one (:meth:`add`); every ``bucket_window`` of them are sorted
    by search size and cut into batches of at most ``max_samples`` atom samples per
    optimisation step (:meth:`run_pending`). A batch whose search fails is retried one
    candidate at a time, and a candidate that still fails becomes a failure row. A candidate
    whose first search did not converge (:func:`needs_deeper_search`) is searched again
    (:func:`_deepen`) right after its batch.

    The search runs in the calling thread; clustering, refinement, scoring and the deeper
    search of a batch run in one worker thread (:meth:`later`) while the next batch is
    searched, so the CPU work after a GPU search, or the scoring beside the CPU kernel's
    threads, overlaps with the next search. The worker computes the candidates' rows on
    :func:`~difffit_screen.devices.cpu_threads` threads (:meth:`map_rows`: once the search is
    fast, on a GPU or on many cores, one scoring thread would be the bottleneck); the
    refinement's few placements run in those threads themselves, not queued behind the search
    in the kernel's pool. Every change to ``outcome`` (rows,
    failures, progress) is made by the worker in the candidates' order, so rows come out in
    the order of the sequential run and the fits are the same whatever the threads.
    """

    MAX_QUEUED = 2
    """Batches waiting for the worker before the search waits for it (bounds memory)."""

    def __init__(self, prep: PreparedMap, params: FitParams, device: Device,
                 outcome: FitOutcome, bar):
        self.prep, self.params, self.outcome, self.bar = prep, params, outcome, bar
        self.sampler = VolumeSampler(prep.loss_volume, device)
        # the refinement's few placements run in the scoring threads, always on the CPU's
        # compiled search: on a GPU run too (no kernel launches under the GIL from many
        # threads), so refined poses do not depend on the device
        self.refine_sampler = VolumeSampler(prep.refine_volume, "cpu")
        self.footprint = FootprintCorrelation(prep)
        box = prep.footprint_box  # whole-map scans would cost more than a fit
        self.starts_pos = sample_positions(prep.mask[box], prep.raw.origin, prep.raw.voxel_size,
                                           params.positions, params.seed,
                                           corner=[b.start for b in box])
        self.starts_rot = sample_rotations(params.rotations, params.seed)
        self.per = len(self.starts_pos) * len(self.starts_rot)  # start placements a candidate
        self.footprint_rg = footprint_radius(prep)
        self._deeper_positions: dict[int, np.ndarray] = {}
        self.pending: list[_Prepared] = []
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="difffit-score")
        self.queued: list[Future] = []
        n = cpu_threads()
        self.scorers = (ThreadPoolExecutor(max_workers=n, thread_name_prefix="difffit-rows")
                        if n > 1 else None)

    def map_rows(self, items: list[tuple[_Prepared, tuple]], n_refine: int | None = None
                 ) -> list[tuple[list[dict] | Exception, float]]:
        """``_rows_for_candidate`` of each ``(candidate, poses)`` on the scoring threads, in
        the items' order: the rows, or the exception that stopped them, and the seconds.
        ``n_refine`` clusters are refined (default :func:`clusters_to_refine`, per candidate).
        """
        def rows_of(item):
            t1 = time.perf_counter()
            n = n_refine or clusters_to_refine(item[0], self.footprint_rg, self.params)
            try:
                rows = _rows_for_candidate(item[0], item[1], self.prep, self.refine_sampler,
                                           self.footprint, self.params, n)
            except Exception as exc:
                log.debug("scoring failed:\n%s", traceback.format_exc())
                rows = exc
            return rows, time.perf_counter() - t1

        if self.scorers is None or len(items) < 2:
            return [rows_of(item) for item in items]
        return list(self.scorers.map(rows_of, items))

    def later(self, fn, *args) -> None:
        """Run ``fn(*args)`` in the worker thread, after everything queued before it."""
        while len(self.queued) >= self.MAX_QUEUED:
            self.queued.pop(0).result()
        self.queued.append(self.worker.submit(fn, *args))

    def drain(self) -> None:
        """Wait for the worker's queue (re-raising its errors) and stop the worker."""
        try:
            while self.queued:
                self.queued.pop(0).result()
        finally:
            self.worker.shutdown(wait=True)
            if self.scorers is not None:
                self.scorers.shutdown(wait=True)

    def add(self, cand: _Prepared) -> None:
        """Queue a prepared candidate; fit the queue once it holds ``bucket_window``."""
        self.pending.append(cand)
        if len(self.pending) >= self.params.bucket_window:
            self.run_pending()

    def run_pending(self) -> None:
        """Bucket the queued candidates by search size, then fit them in memory-bound batches."""
        self.pending.sort(key=lambda c: (len(c.search), c.atoms.name))
        batch: list[_Prepared] = []
        for cand in self.pending:
            n_max = max(len(cand.search), *(len(c.search) for c in batch)) if batch else 0
            if batch and self.per * n_max * (len(batch) + 1) > self.params.max_samples:
                self.search(batch)
                batch = []
            batch.append(cand)
        self.search(batch)
        self.pending.clear()

    def search(self, batch: list[_Prepared]) -> None:
        """Search, cluster, refine and score one batch (one by one if the batch fails)."""
        if not batch:
            return
        t0 = time.perf_counter()
        try:
            results = _search_batch(batch, self.sampler, self.starts_pos, self.starts_rot,
                                    self.params)
        except Exception as exc:  # keep the screen going: retry one by one, then record
            log.debug("search failed:\n%s", traceback.format_exc())
            if len(batch) > 1:
                for c in batch:
                    self.search([c])
                return
            self.later(self.outcome.failures.append,
                       _failure(batch[0], f"search failed: {exc}"))
            return
        t_search = time.perf_counter() - t0
        n_samples = sum(self.per * len(c.search) for c in batch) * self.params.iterations
        self.later(self.finish, batch, results, t_search, n_samples)

    def finish(self, batch: list[_Prepared], results: list, t_search: float,
               n_samples: int) -> None:
        """Rows of a searched batch (in the worker thread), then its deeper searches."""
        self.outcome.search_samples += n_samples
        self.outcome.search_seconds += t_search
        items = list(zip(batch, results, strict=True))
        deeper: list[tuple[_Prepared, tuple]] = []
        for (c, poses), (rows, seconds) in zip(items, self.map_rows(items), strict=True):
            if isinstance(rows, Exception):
                self.outcome.failures.append(_failure(c, f"refinement failed: {rows}"))
            else:
                self.outcome.fits.extend(rows)
                if needs_deeper_search(c, rows, self.footprint_rg, self.params):
                    deeper.append((c, poses))
            share = self.per * len(c.search) * self.params.iterations / max(n_samples, 1)
            self.outcome.seconds[c.atoms.name] = share * t_search + seconds
            self.bar.update(1)
        _deepen(deeper, self.outcome, self.sampler, self.deeper_positions, self.footprint_rg,
                self.params, self.map_rows)

    def deeper_positions(self, factor: int) -> np.ndarray:
        """``(factor x positions, 3)`` start positions of the deeper search (seed + 1),
        spread over the footprint like the first search's; cached per factor."""
        if factor not in self._deeper_positions:
            box = self.prep.footprint_box
            self._deeper_positions[factor] = sample_positions(
                self.prep.mask[box], self.prep.raw.origin, self.prep.raw.voxel_size,
                self.params.positions * factor, self.params.seed + 1,
                corner=[b.start for b in box])
        return self._deeper_positions[factor]


def _failure(cand: _Prepared, reason: str, stage: str = "fit") -> dict:
    """A ``failures`` row of a prepared candidate."""
    return {"candidate": cand.atoms.name, "source": cand.atoms.source, "stage": stage,
            "reason": reason}


def _prepare_or_reason(item: object, name: str, source: str, prep: PreparedMap,
                       params: FitParams) -> _Prepared | str:
    """The prepared candidate (:func:`prepare_candidate`), or why it cannot be fitted."""
    if isinstance(item, Exception):
        return str(item)
    try:
        return prepare_candidate(item, prep, params)
    except Exception as exc:  # InputError, or anything unexpected: a failure row
        log.debug("%s: not prepared", name, exc_info=True)
        if isinstance(exc, InputError):
            return str(exc)
        return f"{source}: cannot prepare candidate ({type(exc).__name__}: {exc})"


def fit_candidates(prep: PreparedMap, candidates: Iterable[tuple[str, str, object]],
                   params: FitParams, progress: bool | None = None,
                   n_total: int | None = None) -> FitOutcome:
    """Fit candidates (``(name, source, Atoms | InputError)`` tuples) into a prepared map.

    Bad candidates become failure rows and the rest go on. Returns rows and timings.
    """
    device = resolve_device(params.device)
    if params.max_samples <= 0:
        params = replace(params, max_samples=30_000_000 if device.type == "cuda" else 1_000_000)
    outcome = FitOutcome()
    bar = make_reporter(progress, n_total, label_device(device))
    batcher = _Batcher(prep, params, device, outcome, bar)
    prepared = ((name, source, _prepare_or_reason(item, name, source, prep, params))
                for name, source, item in candidates)
    try:
        for name, source, cand in read_ahead(prepared, 2 * params.bucket_window):
            if isinstance(cand, _Prepared):
                batcher.add(cand)
                continue
            batcher.later(outcome.failures.append, {"candidate": name, "source": source,
                                                    "stage": "read", "reason": cand})
            batcher.later(bar.update, 1)
        batcher.run_pending()
    finally:
        batcher.drain()  # the worker's rows, and the worker stopped even on an error
    bar.close()
    return outcome


def read_ahead(items: Iterable, depth: int) -> Iterator:
    """``items`` in order, produced up to ``depth`` ahead by a background thread (reading and
    preparing the next candidates while the search runs); the producer's errors are raised
    here, and the thread stops when the consumer stops early."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    done, stop = object(), threading.Event()

    def put(entry: tuple) -> bool:
        """Queue ``entry`` unless the consumer has stopped (never blocks for good)."""
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((None, item)):
                    return
            put((None, done))
        except BaseException as exc:  # handed to the consumer
            put((exc, done))

    thread = threading.Thread(target=produce, name="difffit-read", daemon=True)
    thread.start()
    try:
        while True:
            exc, item = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def footprint_radius(prep: PreparedMap) -> float:
    """Radius of gyration (Å) of the prepared map's footprint voxels (their centres)."""
    kji = np.argwhere(prep.mask[prep.footprint_box])
    if len(kji) == 0:
        return 0.0
    xyz = kji[:, ::-1] * prep.raw.voxel_size
    return float(np.sqrt(((xyz - xyz.mean(0)) ** 2).sum(1).mean()))


def candidate_room(cand: _Prepared, footprint_rg: float) -> float:
    """Room for the candidate in the footprint: ``(footprint Rg / candidate Rg)^3``, about
    how many candidate-sized placements the density holds (1: the candidate fills it)."""
    return (footprint_rg / cand.rg) ** 3


def room_factor(cand: _Prepared, footprint_rg: float, params: FitParams) -> int:
    """``ceil(room)`` between 1 and ``room_cap``: how many times the candidate's search is
    widened (clusters refined, positions of the deeper search) where the footprint holds
    several candidate-sized places, each a basin that a start must reach and that the
    smoothed search loss may rank below wrong poses."""
    room = candidate_room(cand, footprint_rg)
    return int(min(params.room_cap, max(1, np.ceil(room - 1e-6))))


def clusters_to_refine(cand: _Prepared, footprint_rg: float, params: FitParams) -> int:
    """Clusters of the first search refined and scored: ``refine_top x`` :func:`room_factor`.

    In a footprint with room for several candidates (a chain in the density of a complex, a
    subunit of an oligomer or filament) the smoothed search loss can rank the right basin
    below several wrong ones that the refinement on the unsmoothed map would reject."""
    return params.refine_top * room_factor(cand, footprint_rg, params)


def needs_deeper_search(cand: _Prepared, rows: list[dict], footprint_rg: float,
                        params: FitParams) -> bool:
    """Whether a candidate's first search left it unconverged where searching more can help.

    True when the deeper search is on (``deepen_hits > 0``, ``deepen_factor > 0``), the best
    cluster fits (``fit_ok``) with fewer than ``deepen_hits`` hits, and the candidate is not
    much bigger than the density: room (:func:`candidate_room`) ``>= deepen_ratio`` (a
    candidate about the footprint's size, e.g. an oligomer in its own masked map at a high
    contour, can miss as well as a chain among neighbours). It depends on the map and the
    candidate alone, never on the other candidates of the run.
    """
    if params.deepen_hits <= 0 or params.deepen_factor <= 0 or not rows:
        return False
    best = rows[0]
    if not best["fit_ok"] or candidate_room(cand, footprint_rg) < params.deepen_ratio:
        return False
    return best["hits"] < params.deepen_hits


def _deepen(todo: list[tuple[_Prepared, tuple]], outcome: FitOutcome, sampler: VolumeSampler,
            positions_for, footprint_rg: float, params: FitParams, map_rows) -> None:
    """Search ``todo`` candidates again and redo their rows (``map_rows``:
    :meth:`_Batcher.map_rows`).

    The deeper search starts from ``positions x`` :func:`room_factor` positions
    (``positions_for(factor)``, a second seeded set spread over the footprint) times
    ``rotations x deepen_factor`` rotations (a second seeded set): the more candidate-sized
    places the footprint holds, the more places the search starts from. Candidates are
    searched in groups of equal factor, which never changes a candidate's fits.
    """
    if not todo or params.deepen_factor <= 0:
        return
    rotations = sample_rotations(params.rotations * params.deepen_factor, params.seed + 1)
    groups: dict[int, list[int]] = {}
    for i, (cand, _) in enumerate(todo):
        groups.setdefault(room_factor(cand, footprint_rg, params), []).append(i)
    more: dict[int, tuple] = {}  # todo index: (extra poses, its share of the search seconds)
    for factor, members in sorted(groups.items()):
        cands = [todo[i][0] for i in members]
        starts_pos = positions_for(factor)
        t0 = time.perf_counter()
        try:
            results = _search_batch(cands, sampler, starts_pos, rotations, params)
        except Exception:  # the first search's rows stand
            log.warning("deeper search failed; keeping the first search's fits:\n%s",
                        traceback.format_exc())
            continue
        t_search = time.perf_counter() - t0
        per = len(starts_pos) * len(rotations)
        n_samples = sum(per * len(c.search) for c in cands) * params.iterations
        outcome.search_samples += n_samples
        outcome.search_seconds += t_search
        for i, c, res in zip(members, cands, results, strict=True):
            more[i] = (res, per * len(c.search) * params.iterations / max(n_samples, 1)
                       * t_search)
    done = sorted(more)  # the candidates' order, whatever the groups
    items = [(todo[i][0], tuple(np.concatenate([a, b])
                                for a, b in zip(todo[i][1], more[i][0], strict=True)))
             for i in done]
    scored = map_rows(items, params.refine_top * (1 + params.deepen_factor))
    for i, (cand, poses), (rows, seconds) in zip(done, items, scored, strict=True):
        name = cand.atoms.name
        if isinstance(rows, Exception):
            log.warning("%s: deeper search not scored (%s); keeping the first search's fits",
                        name, rows)
            continue
        old = [r for r in outcome.fits if r["candidate"] == name]
        outcome.fits[:] = [r for r in outcome.fits if r["candidate"] != name] + rows
        log.info("%s: deeper search (%d starts): best score %.3f -> %.3f, hits %d -> %d", name,
                 len(poses[0]), old[0]["score"], rows[0]["score"], old[0]["hits"],
                 rows[0]["hits"])
        outcome.seconds[name] = outcome.seconds.get(name, 0.0) + more[i][1] + seconds


# --- output --------------------------------------------------------------------------------

FIT_OUTPUTS = ("fits.parquet", "ranking.parquet", "failures.parquet", "run.json")
"""Files a fit run writes into ``--out`` (and ``models/<name>_c<k>.cif``)."""
MODEL_FILE = r".+_c[0-9]+\.cif(\.part)?"


def model_file_name(candidate: str, cluster_rank: int) -> str:
    """File name of a fitted model: the sanitised candidate name (no path separators, bounded
    length, :func:`~difffit_screen.outputs.safe_name`) and the cluster rank."""
    return f"{safe_name(candidate)}_c{cluster_rank}.cif"


def plan_models(outcome: FitOutcome, candidates: dict[str, Atoms], out_dir: Path,
                per_candidate: int) -> list[dict]:
    """Set ``model_path`` of the rows whose model will be written; return those rows."""
    if per_candidate <= 0:
        return []
    rows = []
    for row in outcome.fits:
        if row["cluster_rank"] > per_candidate or row["candidate"] not in candidates:
            continue
        row["model_path"] = str(out_dir / "models" / model_file_name(row["candidate"],
                                                                     row["cluster_rank"]))
        rows.append(row)
    return rows


def write_models(rows: list[dict], candidates: dict[str, Atoms]) -> list[str]:
    """Write the planned models (mmCIF in the map frame), each atomically.

    A model that cannot be written gets ``model_path`` None; returns one warning per such model.
    """
    problems = []
    for row in rows:
        path = Path(row["model_path"])
        try:
            with atomic_write(path) as tmp:
                write_structure(candidates[row["candidate"]], tmp, np.asarray(row["matrix"]))
        except Exception as exc:  # disk full, odd characters: the tables stay complete
            row["model_path"] = None
            problems.append(f"{row['candidate']}: model not written to {path} "
                            f"({type(exc).__name__}: {exc})")
    return problems


@dataclass
class ScreenResult:
    """The tables of a fit run, in memory (what :func:`run_fit` writes as Parquet).

    Attributes
    ----------
    fits : pyarrow.Table
        Every reported pose cluster of every candidate (``FITS_SCHEMA``).
    ranking : pyarrow.Table
        One row per candidate, best first, with ``zscore``, ``pvalue`` and ``qvalue``
        (``RANKING_SCHEMA``; :func:`~difffit_screen.significance.add_significance`).
    failures : pyarrow.Table
        Every candidate that could not be fitted, and why (``FAILURES_SCHEMA``).
    outcome : FitOutcome
        The rows as dicts, and the timings.
    """

    fits: pa.Table
    ranking: pa.Table
    failures: pa.Table
    outcome: FitOutcome


def result_tables(outcome: FitOutcome) -> tuple[pa.Table, pa.Table]:
    """The ``fits`` table of ``outcome`` and its ranking, with significance."""
    fits = table_from_rows(outcome.fits, FITS_SCHEMA)
    return fits, add_significance(rank_candidates(fits))


def screen(prep: PreparedMap, inputs: Iterable[str | os.PathLike], params: FitParams | None = None,
           progress: bool | None = False) -> ScreenResult:
    """Fit and rank candidates in a prepared map, and return the tables; nothing is written.

    Parameters
    ----------
    prep : PreparedMap
        The map (:func:`~difffit_screen.maps.prepare_map`).
    inputs : iterable of str or path
        Structure files (PDB/mmCIF, ``.gz`` too), folders and globs of them, or library store
        shards (``.parquet``), as for ``difffit-screen fit``.
    params : FitParams, optional
        Search, refinement and scoring parameters (default :class:`FitParams()`; ``models`` is
        ignored: no model files are written).
    progress : bool or None
        Progress lines (done/total, rate, ETA) in the log; off by default.

    Returns
    -------
    ScreenResult
        ``fits``, ``ranking`` and ``failures`` as pyarrow tables (``.to_pandas()`` for pandas).
    """
    params = params if params is not None else FitParams()
    inputs = [str(i) for i in inputs]
    outcome = fit_candidates(prep, iter_candidates(inputs, params), params, progress=progress,
                             n_total=count_candidates(inputs))
    fits, ranking = result_tables(outcome)
    return ScreenResult(fits, ranking, table_from_rows(outcome.failures, FAILURES_SCHEMA),
                        outcome)


@dataclass
class _InputLog:
    """What :func:`run_fit` records about the candidates while they stream into the fit."""

    keep_models: bool
    kept: dict[str, Atoms] = field(default_factory=dict)
    volumes: list[float] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)

    def track(self, items: Iterable[tuple[str, str, object]]
              ) -> Iterator[tuple[str, str, object]]:
        """Pass ``items`` through, noting each candidate's volume, warnings and checksum."""
        for name, source, item in items:
            if isinstance(item, Atoms):
                if self.keep_models:
                    self.kept[name] = item
                self.volumes.append(len(item) * VOLUME_PER_ATOM_A3)
                for w in item.meta.get("warnings") or []:
                    self.warnings.append({"candidate": name, "warning": str(w)})
                if "::" not in source:
                    try:
                        sha = file_sha256(source)
                    except OSError:
                        sha = None
                    self.records.append({"candidate": name, "path": source, "sha256": sha})
            yield name, source, item


def write_results(outcome: FitOutcome, kept: dict[str, Atoms], out_dir: Path,
                  models: int) -> tuple[pa.Table, list[str]]:
    """Write ``failures``, ``fits`` and ``ranking``, then the models; the ranking written and
    one problem per model that could not be written (the tables are then written again, so
    that they never name a model file that is not there)."""
    model_rows = plan_models(outcome, kept, out_dir, models)
    fits, ranking = result_tables(outcome)
    write_table(table_from_rows(outcome.failures, FAILURES_SCHEMA), out_dir / "failures.parquet")
    write_table(fits, out_dir / "fits.parquet")
    write_table(ranking, out_dir / "ranking.parquet")
    problems = write_models(model_rows, kept)
    if problems:
        fits, ranking = result_tables(outcome)
        write_table(fits, out_dir / "fits.parquet")
        write_table(ranking, out_dir / "ranking.parquet")
    return ranking, problems


def run_record(prep: PreparedMap, params: FitParams, device: dict, outcome: FitOutcome,
               inputs: _InputLog, ranking: pa.Table, total: float) -> dict:
    """The run record (``run.json``): parameters, map, inputs, null, warnings, timings."""
    return {
        "command": "fit",
        "params": asdict(params),
        "seed": params.seed,
        "device": device,
        "map": {"path": prep.raw.path, "sha256": prep.info.get("map_sha256"),
                "threshold": prep.threshold, "resolution": prep.resolution,
                "sigmas": list(prep.sigmas), "weights": list(prep.weights),
                "negative": prep.negative, **{k: v for k, v in prep.info.items()
                                               if k not in ("map_path", "map_sha256")}},
        "inputs": inputs.records,
        "significance": read_null_summary(ranking),
        "warnings": inputs.warnings,
        "versions": software_versions(),
        "n_candidates": len(outcome.seconds), "n_failures": len(outcome.failures),
        "complete": True,
        "timing": {"total_s": total, "search_s": outcome.search_seconds,
                   "per_candidate_s": outcome.seconds,
                   "samples_per_s": outcome.search_samples / max(outcome.search_seconds, 1e-9),
                   "search_samples": outcome.search_samples},
    }


def run_fit(prep: PreparedMap, inputs: list[str], out_dir: str | Path, params: FitParams,
            progress: bool | None = None) -> tuple[FitOutcome, dict]:
    """Fit ``inputs`` into ``prep`` and write ``fits``, ``ranking``, ``failures``, models and
    ``run.json``.

    The output folder is checked and created first (:func:`~difffit_screen.outputs.
    prepare_output_dir`), and the files of a previous run in it (:data:`FIT_OUTPUTS` and
    ``models/*_c<k>.cif``, nothing else) are removed, so results of two runs never mix. The
    tables are written before the models and ``run.json`` last, each file atomically: a
    ``run.json`` with ``"complete": true`` marks a complete run. The folder is locked for the
    run (:func:`~difffit_screen.outputs.lock_output_dir`): a second run into it is refused.
    Returns the outcome and the run record.
    :func:`screen` returns the same tables without writing anything.
    """
    out_dir = prepare_output_dir(out_dir, ["models"] if params.models > 0 else [])
    with lock_output_dir(out_dir):
        removed = remove_previous_outputs(out_dir, FIT_OUTPUTS, [("models", MODEL_FILE)],
                                          keep=[i for i in inputs if Path(i).exists()])
        if removed:
            log.info("%s: removed %d file(s) of a previous run", out_dir, len(removed))
        t0 = time.perf_counter()
        device = describe_device(resolve_device(params.device), params.device)
        log.info("%s", format_device(device))
        seen = _InputLog(keep_models=params.models > 0)
        outcome = fit_candidates(prep, seen.track(iter_candidates(inputs, params)), params,
                                 progress=progress, n_total=count_candidates(inputs))
        contour = contour_warning(prep, seen.volumes)
        if contour:
            seen.warnings.append({"candidate": None, "warning": contour})
        ranking, problems = write_results(outcome, seen.kept, out_dir, params.models)
        seen.warnings += [{"candidate": None, "warning": p} for p in problems]
        record = run_record(prep, params, device, outcome, seen, ranking,
                            time.perf_counter() - t0)
        write_text(out_dir / "run.json", json.dumps(record, indent=2, default=_json_default))
    return outcome, record


def contour_warning(prep: PreparedMap, volumes: list[float]) -> str | None:
    """A warning when the contour encloses less than :data:`~difffit_screen.maps.
    MIN_ENCLOSED_FRACTION` of the candidates' (median) molecular volume, with a level to try."""
    if not volumes:
        return None
    molecular = float(np.median(volumes))
    enclosed = float(prep.info.get("footprint_volume_a3") or 0.0)
    if enclosed >= MIN_ENCLOSED_FRACTION * molecular:
        return None
    voxel_volume = float(np.prod(prep.raw.voxel_size))
    what = "the candidate" if len(volumes) == 1 else f"the median of {len(volumes)} candidates"
    return (f"{prep.raw.path or 'map'}: " + contour_advice(
        prep.raw.data, prep.threshold, voxel_volume, enclosed, molecular, what)
        + " (fits into so little density are unreliable)")


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def median_molecular_volume(inputs: list[str], params: FitParams, limit: int = 50
                            ) -> float | None:
    """Median molecular volume (Å³, :data:`VOLUME_PER_ATOM_A3` per heavy atom) of the first
    ``limit`` readable candidates of ``inputs`` (None if none can be read)."""
    volumes = []
    try:
        for _name, _source, item in iter_candidates(inputs, params):
            if isinstance(item, Atoms):
                volumes.append(len(item) * VOLUME_PER_ATOM_A3)
                if len(volumes) >= limit:
                    break
    except Exception:
        log.debug("molecular volume not estimated", exc_info=True)
    return float(np.median(volumes)) if volumes else None
