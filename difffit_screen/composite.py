"""Compositing: place several subunits (and several copies of one) into one map, in rounds.

This automates the by-hand compositing of the original DiffFit tool (reference §7: fit, simulate
the fitted copy's volume, zero that density, refit the rest):

1. every subunit that still needs copies is fitted into the *working* map
   (:func:`~difffit_screen.fit.fit_candidates`, ``clusters`` clusters per subunit, each a
   candidate placement);
2. the clusters of all subunits are pooled and considered best ``score`` first. A cluster is
   **acceptable** when all of these hold (the reason of the first that fails is recorded):

   - ``fit_ok`` (at least ``FitParams.min_inside`` of its atoms inside the contour) and
     ``inside_fraction >= min_inside`` (0.8) x the best inside fraction of the subunit, over
     its clusters this round and its copies accepted before. The rule is *relative*: at a high
     contour a correct copy can have a low inside fraction (0.75 for haemoglobin at 0.0863),
     but it is as far inside as the subunit's other correct copies, while a copy pushed into
     a wrong site (a beta chain into a half-explained alpha site) sticks out more;
   - ``score >= min_score`` (an absolute floor on the footprint correlation, default off);
   - it belongs to the subunit's **top group**: the subunit's cluster scores of the round are
     sorted and split at their largest gap (two groups); a cluster is in the top group when it
     lies above that gap and the gap is significant, ``z >= min_z`` with
     ``z = (score - median_low) / spread_low`` over the *lower* group (``spread`` = the larger
     of 1.4826 x MAD and the sd, at least ``min_spread``). Many true copies (the 14 GroEL
     subunits) then form the top group together, instead of inflating the null as a
     "median of all clusters" null would. With fewer than 3 clusters there is no null and the
     rule is skipped (``z = inf``);
   - ``rel >= rel_best`` with ``rel = (score - median_low) / (best - median_low)``: the
     cluster is closer to the subunit's best than to the bulk (a fraction of the best *above
     the bulk*, since footprint correlations of one copy of an oligomer are near 0 and can be
     negative);
   - it does not clash: at most ``clash_fraction`` of its CA atoms lie within
     ``clash_distance`` Å of the CA atoms of any copy accepted before (this round or earlier);
   - the subunit's requested copy count (``--copies NAME=K``) is not reached yet.

   Accepting is greedy, so that clashes are checked against everything accepted so far:
   larger subunits first (size class ``round(log2(n_CA))``, so that subunits within about a
   factor 1.4 in size compete on score), then best score first. At low resolution a small
   subunit fits "well" almost anywhere; placing the large ones first keeps it from taking
   their density;
3. the accepted copies' density is simulated at the map's resolution
   (:meth:`~difffit_screen.scores.FootprintCorrelation.simulate`) and the working map is set to
   0 wherever a copy's simulated density exceeds ``zero_level`` x that copy's maximum (the
   paper's *Simulate volume* + *Zero density*); the working map is prepared again with the same
   threshold and resolution. ``zero_level`` 0.3 keeps the zeroed region close to the copy's
   envelope: at 0.05 (about 5 Å beyond the surface at 11.5 Å) the zeroing ate the interfaces
   of the tightly packed GroEL neighbours and the last 3 of 14 copies were no longer found;
4. rounds stop when a round accepts nothing, every requested copy is placed (when all subunits
   have counts), ``max_rounds`` is reached, or the footprint is explained (fewer than
   ``stop_footprint`` of the original footprint voxels remain above the threshold).

Outputs (:func:`run_composite`): ``assembly.cif`` (one chain per placed copy, ids A, B, ...,
Z, AA, AB, ...), ``assembly.json`` (chain -> subunit, source, matrix, round, scores),
``residual.mrc``, ``rounds.parquet`` (every considered cluster and its decision),
``fits.parquet`` / ``ranking.parquet`` (the accepted placements, one "candidate" per chain),
``composite.cxc`` (ChimeraX) and ``run.json``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import InputError
from .fit import fit_candidates, iter_candidates, software_versions
from .maps import (
    VOLUME_PER_ATOM_A3,
    ContourError,
    DensityMap,
    PreparedMap,
    default_sigmas,
    prepare_map,
    read_map,
    write_map,
)
from .outputs import atomic_write, prepare_output_dir, remove_previous_outputs, write_text
from .params import CompositeParams, FitParams
from .scores import FootprintCorrelation
from .structures import Atoms, apply_matrix, atomic_numbers, select_atoms, to_gemmi
from .tables import FAILURES_SCHEMA, FITS_SCHEMA, rank_candidates, table_from_rows, write_table
from .validate import MIN_ATOMS, check_atoms

log = logging.getLogger(__name__)


@dataclass
class Placement:
    """One accepted copy."""

    chain: str
    subunit: str
    source: str
    matrix: np.ndarray  # (12,)
    round: int
    row: dict
    ca: np.ndarray  # (n, 3) posed CA (or all) atoms


COMPOSITE_OUTPUTS = ("assembly.cif", "assembly.json", "residual.mrc", "rounds.parquet",
                     "fits.parquet", "ranking.parquet", "failures.parquet", "composite.cxc",
                     "run.json")
"""Files ``composite`` writes into its output folder (a reused folder loses these, only)."""

ROUNDS_SCHEMA = pa.schema([
    pa.field("round", pa.int32()), pa.field("subunit", pa.string()),
    pa.field("cluster_rank", pa.int32()), pa.field("score", pa.float64()),
    pa.field("z", pa.float64()), pa.field("rel", pa.float64()),
    pa.field("top_group", pa.bool_()), pa.field("hits", pa.int64()),
    pa.field("inside_fraction", pa.float64()), pa.field("clash_fraction", pa.float64()),
    pa.field("clash_with", pa.string()), pa.field("decision", pa.string()),
    pa.field("reason", pa.string()), pa.field("chain", pa.string()),
    pa.field("matrix", pa.list_(pa.float64(), 12)),
])


# --- small pieces (unit-tested) ------------------------------------------------------------

def chain_id(i: int) -> str:
    """Chain id of the ``i``-th copy (0-based): A..Z, AA..AZ, BA.. (spreadsheet style)."""
    letters = ""
    i += 1
    while i > 0:
        i, r = divmod(i - 1, 26)
        letters = chr(65 + r) + letters
    return letters


def clash_atoms(atoms: Atoms) -> np.ndarray:
    """Boolean mask of the atoms used for clash checks: CA atoms, else all atoms."""
    mask = select_atoms(atoms, "ca")
    return mask if mask.any() else np.ones(len(atoms), dtype=bool)


def clash_fraction(xyz: np.ndarray, others: list[np.ndarray], distance: float = 3.0
                   ) -> tuple[float, int]:
    """Largest clash fraction of ``xyz`` with one of ``others``, and that one's index.

    The clash fraction of two copies is symmetric: the larger of the fraction of ``xyz`` within
    ``distance`` Å of the other copy and the fraction of the other copy within ``distance`` Å of
    ``xyz`` (so that a large copy laid over a small one counts as a clash). Returns
    ``(0.0, -1)`` when there is nothing to clash with.
    """
    from scipy.spatial import cKDTree

    best, which = 0.0, -1
    if len(xyz) == 0:
        return best, which
    tree = cKDTree(np.asarray(xyz, dtype=np.float64))
    for k, other in enumerate(others):
        if len(other) == 0:
            continue
        d, _ = cKDTree(np.asarray(other, dtype=np.float64)).query(xyz, k=1,
                                                                  distance_upper_bound=distance)
        d2, _ = tree.query(np.asarray(other, dtype=np.float64), k=1,
                           distance_upper_bound=distance)
        frac = max(float(np.mean(np.isfinite(d))), float(np.mean(np.isfinite(d2))))
        if frac > best:
            best, which = frac, k
    del tree
    return best, which


def zero_mask(dmap: DensityMap, resolution: float, posed: list[tuple[np.ndarray, np.ndarray]],
              level: float = 0.05) -> np.ndarray:
    """Voxels ``[z, y, x]`` where a copy's simulated density exceeds ``level`` x its maximum.

    ``posed`` holds ``(xyz, atomic_numbers)`` of each copy in the map frame; the simulation is
    the one of the ranking score (Gaussians, sigma = 0.225 x resolution).
    """
    dummy = PreparedMap(raw=dmap, mask=np.zeros(dmap.data.shape, bool), normalised=dmap.data,
                        loss_volume=dmap, refine_volume=dmap, threshold=0.0,
                        resolution=resolution, negative=0.0, sigmas=(), weights=())
    sim_engine = FootprintCorrelation.__new__(FootprintCorrelation)
    sim_engine.prep, sim_engine.raw = dummy, dmap
    sim_engine.sigma_a = max(0.225 * resolution, 0.5 * float(dmap.voxel_size.min()))
    out = np.zeros(dmap.data.shape, dtype=bool)
    dims = np.array(dmap.data.shape)
    for xyz, z in posed:
        if len(xyz) == 0:
            continue
        sim, lo = sim_engine.simulate(xyz, z)
        top = sim.max()
        if top <= 0:
            continue
        hit = sim > level * top
        shape = np.array(sim.shape)
        a = np.maximum(lo, 0)
        b = np.minimum(lo + shape, dims)
        if np.any(b <= a):
            continue
        src = tuple(slice(a[i], b[i]) for i in range(3))
        dst = tuple(slice(a[i] - lo[i], b[i] - lo[i]) for i in range(3))
        out[src] |= hit[dst]
    return out


def robust_z(scores: np.ndarray) -> np.ndarray:
    """z of each score against the lower half of ``scores`` (median, 1.4826 x MAD)."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) < 3:
        return np.full(len(s), np.inf)
    low = np.sort(s)[: max(2, (len(s) + 1) // 2)]
    med = float(np.median(low))
    mad = 1.4826 * float(np.median(np.abs(low - med)))
    spread = max(mad, float(np.std(low)), 0.01)
    return (s - med) / spread


def split_scores(scores: np.ndarray, min_spread: float = 0.005
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """Two-group split of one subunit's cluster scores at their largest gap.

    Returns ``(z, top, median_low)``: ``z`` of every score against the lower group (median and
    spread = max(1.4826 x MAD, sd, ``min_spread``)), ``top``, True for the scores above the
    gap, and the lower group's median. With fewer than 3 scores there is no null: ``z = inf``,
    every score is "top" and ``median_low`` is the lowest score.
    """
    s = np.asarray(scores, dtype=np.float64)
    if len(s) < 3:
        return (np.full(len(s), np.inf), np.ones(len(s), dtype=bool),
                float(s.min()) if len(s) else 0.0)
    srt = np.sort(s)[::-1]
    gaps = srt[:-1] - srt[1:]
    k = int(np.argmax(gaps))  # top group = srt[: k + 1]
    cut = srt[k]
    low = srt[k + 1:]
    med = float(np.median(low))
    mad = 1.4826 * float(np.median(np.abs(low - med)))
    spread = max(mad, float(np.std(low)), min_spread)
    return (s - med) / spread, s >= cut, med


def parse_copies(items: list[str] | None) -> dict[str, int]:
    """``["NAME=K", ...]`` -> ``{NAME: K}``."""
    out: dict[str, int] = {}
    for item in items or []:
        name, sep, k = item.partition("=")
        if not sep or not k.strip().isdigit():
            raise InputError(f"--copies {item!r}: expected NAME=K with K a whole number")
        out[name.strip()] = int(k)
    return out


# --- the rounds ----------------------------------------------------------------------------

@dataclass
class CompositeResult:
    placements: list[Placement]
    decisions: list[dict]
    residual: DensityMap
    rounds: int
    stop_reason: str
    footprint_left: float
    seconds: float
    missing: dict
    threshold: float = 0.0
    resolution: float = 0.0
    sigmas: tuple = ()
    failures: list = field(default_factory=list)


def composite(dmap: DensityMap, subunits: dict[str, Atoms], params: CompositeParams,
              threshold: float | None = None, resolution: float | None = None,
              progress: bool | None = None) -> CompositeResult:
    """Place ``subunits`` (name -> Atoms in any frame) into ``dmap`` in rounds."""
    t0 = time.perf_counter()
    for name in params.copies:
        if name not in subunits:
            raise InputError(f"--copies names {name!r}, which is not a subunit "
                             f"(subunits: {', '.join(sorted(subunits))})")

    res0 = resolution if resolution is not None else float(3.0 * dmap.voxel_size.mean())
    sigmas = tuple(params.sigmas) if params.sigmas else default_sigmas(res0)

    def prepare(d: DensityMap) -> PreparedMap:
        return prepare_map(d, threshold=threshold, resolution=res0, sigmas=sigmas,
                           negative=params.negative,
                           min_island_volume=params.min_island_volume)

    prep0 = prepare(dmap)
    threshold, resolution = prep0.threshold, prep0.resolution
    fp0 = int(prep0.mask.sum())
    work = DensityMap(dmap.data.astype(np.float32, copy=True), dmap.voxel_size, dmap.origin,
                      dmap.path)
    clash_sel = {n: clash_atoms(a) for n, a in subunits.items()}
    z_all = {n: atomic_numbers(a.element) for n, a in subunits.items()}
    placements: list[Placement] = []
    decisions: list[dict] = []
    placed = dict.fromkeys(subunits, 0)
    stop_reason, footprint_left, rnd = "max rounds reached", 1.0, 0
    prep = prep0

    def wanted(n: str) -> bool:
        return n not in params.copies or placed[n] < params.copies[n]

    for rnd in range(1, params.max_rounds + 1):
        todo = [n for n in subunits if wanted(n)]
        if not todo:
            stop_reason = "all requested copies placed"
            break
        log.info("round %d: fitting %s into %d footprint voxels", rnd, ", ".join(todo),
                 int(prep.mask.sum()))
        fp = dict(params.fit.__dict__)
        fp["seed"] = params.fit.seed + rnd - 1
        fparams = FitParams(**fp)
        outcome = fit_candidates(prep, [(n, subunits[n].source, subunits[n]) for n in todo],
                                 fparams, progress=progress)
        for f in outcome.failures:
            log.warning("round %d: %s failed: %s", rnd, f["candidate"], f["reason"])
        rows = outcome.fits
        by_sub: dict[str, list[dict]] = {}
        for r in rows:
            by_sub.setdefault(r["candidate"], []).append(r)
        for rs in by_sub.values():
            sc = np.array([r["score"] for r in rs])
            zs, top, med = split_scores(sc, params.min_spread)
            best = float(sc.max())
            max_in = max([r["inside_fraction"] for r in rs] + [
                p.row["inside_fraction"] for p in placements if p.subunit == rs[0]["candidate"]])
            for r, z, tp in zip(rs, zs, top, strict=True):
                r["z"], r["top_group"], r["best"], r["max_inside"] = float(z), bool(tp), best, \
                    max_in
                r["rel"] = float((r["score"] - med) / (best - med)) if best > med else 1.0
        size_class = {n: round(float(np.log2(max(int(clash_sel[n].sum()), 1)))) for n in todo}
        rows.sort(key=lambda r: (-size_class[r["candidate"]], -r["score"]))
        accepted_now: list[Placement] = []
        for r in rows:
            n = r["candidate"]
            atoms = subunits[n]
            m = np.asarray(r["matrix"], dtype=np.float64)
            ca = apply_matrix(atoms.xyz[clash_sel[n]], m)
            cf, which = clash_fraction(ca, [p.ca for p in placements], params.clash_distance)
            reason = ""
            min_in = params.min_inside * r["max_inside"]
            if not r["fit_ok"]:
                reason = f"no fit: inside_fraction {r['inside_fraction']:.2f}"
            elif r["inside_fraction"] < min_in:
                reason = (f"inside_fraction {r['inside_fraction']:.2f} < {params.min_inside:g} x "
                          f"subunit best {r['max_inside']:.2f}")
            elif r["score"] < params.min_score:
                reason = f"score {r['score']:.3f} < floor {params.min_score}"
            elif not r["top_group"]:
                reason = "below the largest score gap (bulk of the clusters)"
            elif r["z"] < params.min_z:
                reason = f"z {r['z']:.2f} < {params.min_z} (gap not significant)"
            elif r["rel"] < params.rel_best:
                reason = (f"rel {r['rel']:.2f} < {params.rel_best} (closer to the bulk than to "
                          f"the subunit best {r['best']:.3f})")
            elif not wanted(n):
                reason = f"{params.copies[n]} copies of {n} already placed"
            elif cf > params.clash_fraction:
                reason = (f"clash: {cf:.0%} of CA within {params.clash_distance:g} Å of "
                          f"chain {placements[which].chain}")
            dec = {"round": rnd, "subunit": n, "cluster_rank": r["cluster_rank"],
                   "score": r["score"], "z": r["z"], "rel": r["rel"],
                   "top_group": r["top_group"], "hits": r["hits"],
                   "inside_fraction": r["inside_fraction"], "clash_fraction": cf,
                   "clash_with": placements[which].chain if which >= 0 else None,
                   "decision": "rejected" if reason else "accepted", "reason": reason or "ok",
                   "chain": None, "matrix": m}
            if not reason:
                ch = chain_id(len(placements))
                p = Placement(ch, n, atoms.source, m, rnd, dict(r), ca)
                placements.append(p)
                accepted_now.append(p)
                placed[n] += 1
                dec["chain"] = ch
                log.info("round %d: accepted %s cluster %d as chain %s (score %.3f, z %.1f)",
                         rnd, n, r["cluster_rank"], ch, r["score"], r["z"])
            decisions.append(dec)
        if not accepted_now:
            stop_reason = "nothing more acceptable"
            break
        posed = [(apply_matrix(subunits[p.subunit].xyz, p.matrix), z_all[p.subunit])
                 for p in accepted_now]
        zero = zero_mask(work, resolution, posed, params.zero_level)
        work.data[zero] = 0.0
        above = int((work.data > threshold).sum())
        footprint_left = above / max(fp0, 1)
        if footprint_left < params.stop_footprint:
            stop_reason = f"footprint explained ({footprint_left:.1%} left)"
            break
        try:
            prep = prepare(work)
        except InputError:
            stop_reason = "no density left above the threshold"
            break
        if params.copies and all(n in params.copies for n in subunits) and \
                not any(wanted(n) for n in subunits):
            stop_reason = "all requested copies placed"
            break
    else:
        rnd = params.max_rounds
    missing = {n: params.copies[n] - placed[n] for n in params.copies
               if placed[n] < params.copies[n]}
    return CompositeResult(placements, decisions, work, rnd, stop_reason, footprint_left,
                           time.perf_counter() - t0, missing, threshold, resolution, sigmas)


# --- outputs -------------------------------------------------------------------------------

def write_assembly(result: CompositeResult, subunits: dict[str, Atoms], path: Path,
                   map_path: str = "") -> Path:
    """One mmCIF with a chain per placed copy; the poses go into a ``_difffit_placement`` loop."""
    import gemmi

    st = gemmi.Structure()
    st.name = "assembly"
    model = gemmi.Model(1) if hasattr(gemmi.Model, "__init__") else gemmi.Model("1")
    for p in result.placements:
        atoms = subunits[p.subunit]
        to_gemmi(atoms, apply_matrix(atoms.xyz, p.matrix), chain_name=p.chain, model=model)
    st.add_model(model)
    st.setup_entities()
    doc = st.make_mmcif_document()
    block = doc.sole_block()
    loop = block.init_loop("_difffit_placement.", [
        "chain_id", "subunit", "source", "round", "cluster_rank", "score", "hits", "matrix"])
    for p in result.placements:
        loop.add_row([p.chain, gemmi.cif.quote(p.subunit), gemmi.cif.quote(p.source or "?"),
                      str(p.round), str(p.row["cluster_rank"]), f"{p.row['score']:.4f}",
                      str(p.row["hits"]),
                      gemmi.cif.quote(" ".join(f"{v:.5f}" for v in p.matrix))])
    if map_path:
        block.set_pair("_difffit_composite.map", gemmi.cif.quote(map_path))
    with atomic_write(path) as tmp:
        doc.write_file(str(tmp))
    return path


def write_composite_cxc(path: Path, map_file: str | None, threshold: float,
                        assembly: Path, residual: Path) -> Path:
    """ChimeraX script: the map at the threshold (#1), the assembly (#2), the residual (#3)."""
    from .report import cxc_quote, rel_path

    lines = ["# ChimeraX script written by difffit-screen composite: map, assembled model "
             "(one chain per copy) and residual map.", "close session"]
    if map_file:
        lines += [f"open {cxc_quote(rel_path(Path(map_file).resolve(), path.parent.resolve()))}",
                  f"volume #1 level {threshold:.6g} style surface transparency 0.6"]
    else:
        lines.append("# (no map file)")
    lines += [f"open {cxc_quote(rel_path(assembly.resolve(), path.parent.resolve()))}",
              "color bychain", "cartoon",
              f"open {cxc_quote(rel_path(residual.resolve(), path.parent.resolve()))}",
              f"volume #3 level {threshold:.6g} style mesh color gray",
              "hide #3 models", "view"]
    write_text(path, "\n".join(lines) + "\n")
    return path


def run_composite(map_path: str, inputs: list[str], out_dir: str | Path,
                  params: CompositeParams, threshold: float | None = None,
                  resolution: float | None = None, progress: bool | None = None
                  ) -> CompositeResult:
    """Read the map and subunits, composite, and write every output to ``out_dir``."""
    out = prepare_output_dir(out_dir)
    remove_previous_outputs(out, COMPOSITE_OUTPUTS)
    dmap = read_map(map_path)
    subunits: dict[str, Atoms] = {}
    failures: list[dict] = []
    for name, source, item in iter_candidates(inputs, params.fit):
        reason = str(item) if isinstance(item, Exception) else None
        if reason is None:
            try:
                check_atoms(item, source)
                select = select_atoms(item, params.fit.atoms)
                if int(select.sum()) < MIN_ATOMS:
                    reason = (f"{source}: too few atoms to fit in atom set "
                              f"'{params.fit.atoms}' ({int(select.sum())})")
            except Exception as exc:
                reason = f"{source}: {type(exc).__name__}: {exc}"
        if reason is not None:
            log.warning("skipped subunit %s: %s", name, reason)
            failures.append({"candidate": name, "source": source, "stage": "read",
                             "reason": reason})
            continue
        subunits[name] = item
    write_table(table_from_rows(failures, FAILURES_SCHEMA), out / "failures.parquet")
    if not subunits:
        raise InputError("no usable subunits" + (": " + "; ".join(f["reason"] for f in failures)
                                                 if failures else " given"))
    try:
        result = composite(dmap, subunits, params, threshold, resolution, progress)
    except ContourError as exc:
        volumes = [len(a) * VOLUME_PER_ATOM_A3 for a in subunits.values()]
        raise exc.with_advice(float(np.median(volumes)), "the subunits (median)") from None
    result.failures = failures
    thr, res = result.threshold, result.resolution
    assembly = write_assembly(result, subunits, out / "assembly.cif", str(map_path))
    with atomic_write(out / "residual.mrc") as tmp:
        write_map(tmp, result.residual)
    residual = out / "residual.mrc"
    write_table(table_from_rows(result.decisions, ROUNDS_SCHEMA), out / "rounds.parquet")
    fits_rows = []
    for p in result.placements:
        r = {k: v for k, v in p.row.items()
             if k not in ("z", "best", "rel", "top_group", "max_inside")}
        r["candidate"] = f"{p.chain}:{p.subunit}"
        fits_rows.append(r)
    fits = table_from_rows(fits_rows, FITS_SCHEMA)
    write_table(fits, out / "fits.parquet")
    write_table(rank_candidates(fits), out / "ranking.parquet")
    write_composite_cxc(out / "composite.cxc", str(map_path), thr, assembly, residual)
    info = {
        "command": "composite", "map": str(map_path), "threshold": thr, "resolution": res,
        "sigmas": list(result.sigmas), "rounds": result.rounds, "stop_reason": result.stop_reason,
        "footprint_left": result.footprint_left, "seconds": result.seconds,
        "missing_copies": result.missing,
        "placed": {n: sum(p.subunit == n for p in result.placements) for n in subunits},
        "chains": [{"chain": p.chain, "subunit": p.subunit, "source": p.source,
                    "matrix": [float(v) for v in p.matrix], "round": p.round,
                    "cluster_rank": int(p.row["cluster_rank"]), "score": float(p.row["score"]),
                    "z": float(p.row["z"]), "rel": float(p.row["rel"]),
                    "hits": int(p.row["hits"]),
                    "inside_fraction": float(p.row["inside_fraction"])}
                   for p in result.placements],
        "params": {**{k: v for k, v in asdict(params).items() if k != "fit"},
                   "fit": asdict(params.fit)},
        "versions": software_versions(),
    }
    info["failures"] = failures
    write_text(out / "assembly.json", json.dumps(info, indent=2, default=str))
    write_text(out / "run.json", json.dumps(info, indent=2, default=str))
    return result
