"""Compositing: place several subunits (and several copies of one) into one map, in rounds.

This automates the by-hand compositing of the original DiffFit tool (reference §7: fit, simulate
the fitted copy's volume, zero that density, refit the rest):

1. every subunit that still needs copies is fitted into the *working* map
   (:func:`~difffit_screen.fit.fit_candidates`, ``clusters`` clusters per subunit, each a
   candidate placement);
2. the clusters of all subunits are pooled and considered best ``score`` first. A cluster is
   **acceptable** when all of these hold (the reason of the first that fails is recorded):

   - ``fit_ok`` and ``inside_fraction >= min_inside`` (most atoms inside the contour);
   - ``score >= min_score`` (an absolute floor on the footprint correlation);
   - ``z >= min_z``: the cluster stands out from the subunit's *other* clusters of the round;
     ``z = (score - median) / (1.4826 * MAD)`` over the lower half of that subunit's cluster
     scores (the lower half is used as the null so that many true copies, e.g. 14 GroEL
     subunits, do not inflate the spread);
   - ``score >= rel_best * best`` where ``best`` is the subunit's best score this round;
   - it does not clash: at most ``clash_fraction`` of its CA atoms lie within
     ``clash_distance`` Å of the CA atoms of any copy accepted before (this round or earlier);
   - the subunit's requested copy count (``--copies NAME=K``) is not reached yet.

   Accepting is greedy, best first, so that clashes are checked against everything accepted
   so far;
3. the accepted copies' density is simulated at the map's resolution
   (:meth:`~difffit_screen.scores.FootprintCorrelation.simulate`) and the working map is set to
   0 wherever a copy's simulated density exceeds ``zero_level`` x that copy's maximum (the
   paper's *Simulate volume* + *Zero density*); the working map is prepared again with the same
   threshold and resolution;
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

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import InputError
from .fit import FitParams, fit_candidates, iter_candidates, software_versions
from .maps import DensityMap, PreparedMap, prepare_map, read_map, write_map
from .scores import FootprintCorrelation
from .structures import Atoms, apply_matrix, atomic_numbers, select_atoms, to_gemmi
from .tables import FITS_SCHEMA, rank_candidates, table_from_rows, write_table

log = logging.getLogger(__name__)


@dataclass
class CompositeParams:
    """Acceptance, zeroing and stopping parameters of compositing (see the module docstring)."""

    fit: FitParams = field(default_factory=lambda: FitParams(refine_top=12))
    copies: dict = field(default_factory=dict)
    max_rounds: int = 6
    clash_fraction: float = 0.10
    clash_distance: float = 3.0
    min_inside: float = 0.5
    min_score: float = 0.0
    min_z: float = 3.0
    rel_best: float = 0.5
    zero_level: float = 0.05
    stop_footprint: float = 0.07
    sigmas: tuple | None = None  # default: (resolution / 3, 2 x resolution / 3)
    negative: float = -0.5
    min_island_volume: float = 200.0


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


ROUNDS_SCHEMA = pa.schema([
    pa.field("round", pa.int32()), pa.field("subunit", pa.string()),
    pa.field("cluster_rank", pa.int32()), pa.field("score", pa.float64()),
    pa.field("z", pa.float64()), pa.field("hits", pa.int64()),
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
    """Largest fraction of ``xyz`` within ``distance`` Å of one of ``others``, and its index.

    Returns ``(0.0, -1)`` when there is nothing to clash with.
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
        frac = float(np.mean(np.isfinite(d)))
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
    sigmas = tuple(params.sigmas) if params.sigmas else (res0 / 3.0, 2.0 * res0 / 3.0)

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
            zs = robust_z(np.array([r["score"] for r in rs]))
            best = max(r["score"] for r in rs)
            for r, z in zip(rs, zs, strict=True):
                r["z"], r["best"] = float(z), best
        rows.sort(key=lambda r: -r["score"])
        accepted_now: list[Placement] = []
        for r in rows:
            n = r["candidate"]
            atoms = subunits[n]
            m = np.asarray(r["matrix"], dtype=np.float64)
            ca = apply_matrix(atoms.xyz[clash_sel[n]], m)
            cf, which = clash_fraction(ca, [p.ca for p in placements], params.clash_distance)
            reason = ""
            if not r["fit_ok"] or r["inside_fraction"] < params.min_inside:
                reason = f"inside_fraction {r['inside_fraction']:.2f} < {params.min_inside}"
            elif r["score"] < params.min_score:
                reason = f"score {r['score']:.3f} < floor {params.min_score}"
            elif r["z"] < params.min_z:
                reason = f"z {r['z']:.2f} < {params.min_z} (not above the other clusters)"
            elif r["score"] < params.rel_best * r["best"]:
                reason = f"score < {params.rel_best} x subunit best {r['best']:.3f}"
            elif not wanted(n):
                reason = f"{params.copies[n]} copies of {n} already placed"
            elif cf > params.clash_fraction:
                reason = (f"clash: {cf:.0%} of CA within {params.clash_distance:g} Å of "
                          f"chain {placements[which].chain}")
            dec = {"round": rnd, "subunit": n, "cluster_rank": r["cluster_rank"],
                   "score": r["score"], "z": r["z"], "hits": r["hits"],
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
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.write_file(str(path))
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
    path.write_text("\n".join(lines) + "\n")
    return path


def run_composite(map_path: str, inputs: list[str], out_dir: str | Path,
                  params: CompositeParams, threshold: float | None = None,
                  resolution: float | None = None, progress: bool | None = None
                  ) -> CompositeResult:
    """Read the map and subunits, composite, and write every output to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dmap = read_map(map_path)
    subunits: dict[str, Atoms] = {}
    for name, _source, item in iter_candidates(inputs, params.fit):
        if isinstance(item, Exception):
            raise InputError(str(item))
        subunits[name] = item
    if not subunits:
        raise InputError("no subunits given")
    result = composite(dmap, subunits, params, threshold, resolution, progress)
    thr, res = result.threshold, result.resolution
    assembly = write_assembly(result, subunits, out / "assembly.cif", str(map_path))
    residual = write_map(out / "residual.mrc", result.residual)
    write_table(table_from_rows(result.decisions, ROUNDS_SCHEMA), out / "rounds.parquet")
    fits_rows = []
    for p in result.placements:
        r = {k: v for k, v in p.row.items() if k not in ("z", "best")}
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
                    "z": float(p.row["z"]), "hits": int(p.row["hits"]),
                    "inside_fraction": float(p.row["inside_fraction"])}
                   for p in result.placements],
        "params": {**{k: v for k, v in asdict(params).items() if k != "fit"},
                   "fit": asdict(params.fit)},
        "versions": software_versions(),
    }
    (out / "assembly.json").write_text(json.dumps(info, indent=2, default=str))
    (out / "run.json").write_text(json.dumps(info, indent=2, default=str))
    return result


# --- CLI -----------------------------------------------------------------------------------

def add_composite_arguments(p: argparse.ArgumentParser) -> None:
    """Register the ``composite`` command's arguments."""
    d = CompositeParams()
    f = d.fit
    p.add_argument("--map", required=True, help="map of the whole complex (.mrc/.map)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("inputs", nargs="+", metavar="MODEL",
                   help="subunit structure files (any frame), or folders of them")
    p.add_argument("--threshold", type=float, help="contour level (default as for fit)")
    p.add_argument("--resolution", type=float, help="map resolution in Å (default 3 x voxel)")
    p.add_argument("--copies", nargs="*", metavar="NAME=K", default=[],
                   help="copies wanted of a subunit (NAME = file stem); without a count, copies "
                        "are placed while acceptable")
    p.add_argument("--max-rounds", type=int, default=d.max_rounds)
    p.add_argument("--clash-fraction", type=float, default=d.clash_fraction,
                   help="a copy clashes when more than this fraction of its CA atoms lie within "
                        f"--clash-distance of another copy's (default {d.clash_fraction})")
    p.add_argument("--clash-distance", type=float, default=d.clash_distance)
    p.add_argument("--min-score", type=float, default=d.min_score)
    p.add_argument("--min-z", type=float, default=d.min_z,
                   help="a cluster must be this many robust sd above the lower half of its "
                        f"subunit's clusters (default {d.min_z})")
    p.add_argument("--rel-best", type=float, default=d.rel_best)
    p.add_argument("--min-inside", type=float, default=d.min_inside)
    p.add_argument("--zero-level", type=float, default=d.zero_level,
                   help="zero the map where a copy's simulated density > this x its max")
    p.add_argument("--stop-footprint", type=float, default=d.stop_footprint)
    p.add_argument("--sigmas", type=float, nargs="+",
                   help="smoothing levels of the search in Å (default resolution/3 and 2 x "
                        "resolution/3: sharper than fit's 2 4 8, which pull every subunit into "
                        "the centre of a multi-subunit density)")
    s = p.add_argument_group("search (as for fit)")
    s.add_argument("--positions", type=int, default=f.positions)
    s.add_argument("--rotations", type=int, default=f.rotations)
    s.add_argument("--iterations", type=int, default=f.iterations)
    s.add_argument("--clusters", type=int, default=f.refine_top,
                   help=f"clusters refined and considered per subunit and round "
                        f"(default {f.refine_top})")
    s.add_argument("--max-search-atoms", type=int, default=f.max_search_atoms)
    s.add_argument("--seed", type=int, default=f.seed)
    s.add_argument("--device", default=f.device)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)


def run_composite_command(args: argparse.Namespace) -> int:
    """Handler of ``difffit-screen composite``."""
    fit = FitParams(positions=args.positions, rotations=args.rotations,
                    iterations=args.iterations, refine_top=args.clusters,
                    max_search_atoms=args.max_search_atoms, seed=args.seed, device=args.device,
                    models=0)
    for name in ("positions", "rotations", "iterations", "clusters", "max_rounds"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    params = CompositeParams(fit=fit, copies=parse_copies(args.copies),
                             max_rounds=args.max_rounds, clash_fraction=args.clash_fraction,
                             clash_distance=args.clash_distance, min_inside=args.min_inside,
                             min_score=args.min_score, min_z=args.min_z, rel_best=args.rel_best,
                             zero_level=args.zero_level, stop_footprint=args.stop_footprint,
                             sigmas=tuple(args.sigmas) if args.sigmas else None)
    res = run_composite(args.map, args.inputs, args.out, params, args.threshold,
                        args.resolution, args.progress)
    counts: dict[str, int] = {}
    for p in res.placements:
        counts[p.subunit] = counts.get(p.subunit, 0) + 1
    copies = ", ".join(f"{n} x{k}" for n, k in counts.items())
    print(f"placed {len(res.placements)} copies ({copies}"
          f") in {res.rounds} round(s), {res.stop_reason}; {res.seconds:.1f} s -> {args.out}",
          file=sys.stderr)
    for n, k in res.missing.items():
        print(f"difffit-screen composite: {k} requested copies of {n} not placed",
              file=sys.stderr)
    return 0 if res.placements else 1
