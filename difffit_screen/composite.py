"""Compositing: place several subunits (and several copies of one) into one map, in rounds.

This automates the by-hand compositing of the original DiffFit tool (reference §7: fit, simulate
the fitted copy's volume, zero that density, refit the rest):

1. every subunit that still needs copies is fitted into the *working* map
   (:func:`~difffit_screen.fit.fit_candidates`, ``clusters`` clusters per subunit, each a
   candidate placement);
2. the clusters of all subunits are pooled and considered best ``score`` first. A cluster is
   **acceptable** when all of these hold (:func:`decide`: the reason of the first that fails
   is recorded; :func:`score_round` gives each cluster its standing):

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

The rounds run in memory (:func:`place_subunits`, a :class:`CompositeResult`); outputs
(:func:`run_composite`): ``assembly.cif`` (one chain per placed copy, ids A, B, ...,
Z, AA, AB, ...), ``assembly.json`` (chain -> subunit, source, matrix, round, scores),
``residual.mrc``, ``rounds.parquet`` (every considered cluster and its decision),
``fits.parquet`` / ``ranking.parquet`` (the accepted placements, one "candidate" per chain),
``composite.cxc`` (ChimeraX) and ``run.json``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import InputError
from .fit import fit_candidates, iter_candidates
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
from .outputs import (
    atomic_write,
    lock_output_dir,
    prepare_output_dir,
    remove_previous_outputs,
    software_versions,
    write_text,
)
from .params import CompositeParams, FitParams
from .scores import FootprintCorrelation
from .significance import robust_sd
from .structures import Atoms, apply_matrix, atomic_numbers, select_atoms, to_gemmi
from .tables import FAILURES_SCHEMA, FITS_SCHEMA, rank_candidates, table_from_rows, write_table
from .validate import MIN_ATOMS, check_atoms

log = logging.getLogger(__name__)


@dataclass
class Cluster:
    """One pose cluster of a subunit in a round, and where it stands among the subunit's.

    Attributes
    ----------
    row : dict
        Its ``fits`` row from :func:`~difffit_screen.fit.fit_candidates` (``FITS_SCHEMA``
        columns; never modified).
    z : float
        z of its score against the lower group of the subunit's cluster scores of the round
        (:func:`split_scores`; ``inf`` with fewer than 3 clusters).
    top_group : bool
        Whether its score lies above the largest gap of those scores.
    rel : float
        ``(score - median_low) / (best - median_low)`` (1 when ``best <= median_low``).
    best : float
        The subunit's best cluster score of the round.
    max_inside : float
        The subunit's best inside fraction: its clusters of the round and its copies accepted
        before.
    """

    row: dict
    z: float
    top_group: bool
    rel: float
    best: float
    max_inside: float

    @property
    def subunit(self) -> str:
        return self.row["candidate"]

    @property
    def score(self) -> float:
        return self.row["score"]

    @property
    def inside_fraction(self) -> float:
        return self.row["inside_fraction"]

    @property
    def fit_ok(self) -> bool:
        return self.row["fit_ok"]

    @property
    def matrix(self) -> np.ndarray:
        """``(12,)`` float64 pose ``[R | t]`` (row-major), input frame to map frame."""
        return np.asarray(self.row["matrix"], dtype=np.float64)


@dataclass
class Placement:
    """One accepted copy: chain id, subunit, pose, round, the cluster it came from, and its
    posed clash atoms ``(n, 3)`` (CA, else all; :func:`clash_atoms`)."""

    chain: str
    subunit: str
    source: str
    matrix: np.ndarray  # (12,)
    round: int
    cluster: Cluster
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


def z_against(scores: np.ndarray, low: np.ndarray, min_spread: float
              ) -> tuple[np.ndarray, float]:
    """z of ``scores`` against the group ``low``, and its median: ``(s - median) / spread``
    with ``spread = max(robust sd, sd, min_spread)`` of ``low``
    (:func:`~difffit_screen.significance.robust_sd`)."""
    med = float(np.median(low))
    spread = max(robust_sd(low, med), float(np.std(low)), min_spread)
    return (scores - med) / spread, med


def robust_z(scores: np.ndarray) -> np.ndarray:
    """z of each score against the lower half of ``scores`` (:func:`z_against`, spread at
    least 0.01)."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) < 3:
        return np.full(len(s), np.inf)
    low = np.sort(s)[: max(2, (len(s) + 1) // 2)]
    return z_against(s, low, 0.01)[0]


def split_scores(scores: np.ndarray, min_spread: float = 0.005
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """Two-group split of one subunit's cluster scores at their largest gap.

    Returns ``(z, top, median_low)``: ``z`` of every score against the lower group
    (:func:`z_against`: median and spread = max(robust sd, sd, ``min_spread``)), ``top``, True
    for the scores above the gap, and the lower group's median. With fewer than 3 scores there
    is no null: ``z = inf``, every score is "top" and ``median_low`` is the lowest score.
    """
    s = np.asarray(scores, dtype=np.float64)
    if len(s) < 3:
        return (np.full(len(s), np.inf), np.ones(len(s), dtype=bool),
                float(s.min()) if len(s) else 0.0)
    srt = np.sort(s)[::-1]
    gaps = srt[:-1] - srt[1:]
    k = int(np.argmax(gaps))  # top group = srt[: k + 1]
    z, med = z_against(s, srt[k + 1:], min_spread)
    return z, s >= srt[k], med


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
    """What :func:`place_subunits` found: the placed copies, every decision, the residual map.

    ``decisions`` are rows of :data:`ROUNDS_SCHEMA` (every cluster considered, in the order
    considered); ``residual`` is the working map after the last round's zeroing; ``missing``
    maps a subunit to the requested copies not placed; ``threshold``, ``resolution`` and
    ``sigmas`` are those the map was prepared with.
    """

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


def score_round(fits: list[dict], placements: list[Placement], min_spread: float
                ) -> list[Cluster]:
    """The clusters of one round (``fits`` rows, in their order) with their standing.

    Each subunit's cluster scores are split at their largest gap (:func:`split_scores`); a
    cluster's ``max_inside`` is the best inside fraction of its subunit over its clusters of
    the round and its copies accepted before (``placements``).
    """
    by_subunit: dict[str, list[int]] = {}
    for i, row in enumerate(fits):
        by_subunit.setdefault(row["candidate"], []).append(i)
    clusters: dict[int, Cluster] = {}
    for name, index in by_subunit.items():
        rows = [fits[i] for i in index]
        scores = np.array([r["score"] for r in rows])
        zs, top, med = split_scores(scores, min_spread)
        best = float(scores.max())
        max_inside = max([r["inside_fraction"] for r in rows] + [
            p.cluster.inside_fraction for p in placements if p.subunit == name])
        for i, row, z, in_top in zip(index, rows, zs, top, strict=True):
            rel = float((row["score"] - med) / (best - med)) if best > med else 1.0
            clusters[i] = Cluster(row, float(z), bool(in_top), rel, best, max_inside)
    return [clusters[i] for i in range(len(fits))]


def decide(cluster: Cluster, params: CompositeParams, n_placed: int, clash: float,
           clash_with: str | None) -> str:
    """Why ``cluster`` cannot be accepted, or ``""`` when it can.

    The rules of the module docstring, in order: the first that fails gives the reason.

    Parameters
    ----------
    cluster : Cluster
        The candidate placement and its standing among its subunit's clusters.
    params : CompositeParams
        The acceptance thresholds and the requested copy counts.
    n_placed : int
        Copies of the cluster's subunit placed so far.
    clash, clash_with : float, str or None
        Its largest clash fraction with a copy placed before (:func:`clash_fraction`), and that
        copy's chain.
    """
    c, p, name = cluster, params, cluster.subunit
    if not c.fit_ok:
        return f"no fit: inside_fraction {c.inside_fraction:.2f}"
    if c.inside_fraction < p.min_inside * c.max_inside:
        return (f"inside_fraction {c.inside_fraction:.2f} < {p.min_inside:g} x "
                f"subunit best {c.max_inside:.2f}")
    if c.score < p.min_score:
        return f"score {c.score:.3f} < floor {p.min_score}"
    if not c.top_group:
        return "below the largest score gap (bulk of the clusters)"
    if c.z < p.min_z:
        return f"z {c.z:.2f} < {p.min_z} (gap not significant)"
    if c.rel < p.rel_best:
        return (f"rel {c.rel:.2f} < {p.rel_best} (closer to the bulk than to "
                f"the subunit best {c.best:.3f})")
    if name in p.copies and n_placed >= p.copies[name]:
        return f"{p.copies[name]} copies of {name} already placed"
    if clash > p.clash_fraction:
        return f"clash: {clash:.0%} of CA within {p.clash_distance:g} Å of chain {clash_with}"
    return ""


def decision_row(rnd: int, cluster: Cluster, clash: float, clash_with: str | None,
                 reason: str, chain: str | None) -> dict:
    """The :data:`ROUNDS_SCHEMA` row of one considered cluster (``reason`` "" = accepted)."""
    c = cluster
    return {"round": rnd, "subunit": c.subunit, "cluster_rank": c.row["cluster_rank"],
            "score": c.score, "z": c.z, "rel": c.rel, "top_group": c.top_group,
            "hits": c.row["hits"], "inside_fraction": c.inside_fraction,
            "clash_fraction": clash, "clash_with": clash_with,
            "decision": "rejected" if reason else "accepted", "reason": reason or "ok",
            "chain": chain, "matrix": c.matrix}


class _Rounds:
    """The state of a compositing run between rounds: working map, placements, decisions."""

    def __init__(self, dmap: DensityMap, subunits: dict[str, Atoms], params: CompositeParams,
                 threshold: float | None, resolution: float | None, progress: bool | None):
        self.subunits, self.params, self.progress = subunits, params, progress
        self.res0 = resolution if resolution is not None else float(3.0 * dmap.voxel_size.mean())
        self.sigmas = tuple(params.sigmas) if params.sigmas else default_sigmas(self.res0)
        self.threshold = threshold
        self.prep = self.prepare(dmap)
        # the working map is prepared again at the first map's (resolved) threshold
        self.threshold, self.resolution = self.prep.threshold, self.prep.resolution
        self.fp0 = int(self.prep.mask.sum())
        self.footprint_left = 1.0
        self.work = DensityMap(dmap.data.astype(np.float32, copy=True), dmap.voxel_size,
                               dmap.origin, dmap.path)
        self.clash_sel = {n: clash_atoms(a) for n, a in subunits.items()}
        self.size_class = {n: round(float(np.log2(max(int(sel.sum()), 1))))
                           for n, sel in self.clash_sel.items()}
        self.z_all = {n: atomic_numbers(a.element) for n, a in subunits.items()}
        self.placements: list[Placement] = []
        self.decisions: list[dict] = []
        self.placed = dict.fromkeys(subunits, 0)

    def prepare(self, d: DensityMap) -> PreparedMap:
        p = self.params
        return prepare_map(d, threshold=self.threshold, resolution=self.res0, sigmas=self.sigmas,
                           negative=p.negative, min_island_volume=p.min_island_volume)

    def wanted(self, name: str) -> bool:
        """Whether subunit ``name`` still needs copies (always, without a requested count)."""
        return name not in self.params.copies or self.placed[name] < self.params.copies[name]

    def fit_round(self, rnd: int, todo: list[str]) -> list[Cluster]:
        """Fit the subunits ``todo`` into the working map; their clusters, scored."""
        log.info("round %d: fitting %s into %d footprint voxels", rnd, ", ".join(todo),
                 int(self.prep.mask.sum()))
        fparams = replace(self.params.fit, seed=self.params.fit.seed + rnd - 1)
        outcome = fit_candidates(self.prep, [(n, self.subunits[n].source, self.subunits[n])
                                             for n in todo], fparams, progress=self.progress)
        for f in outcome.failures:
            log.warning("round %d: %s failed: %s", rnd, f["candidate"], f["reason"])
        return score_round(outcome.fits, self.placements, self.params.min_spread)

    def accept(self, rnd: int, clusters: list[Cluster]) -> list[Placement]:
        """Decide on every cluster, larger subunits first, then best score first (greedy, so
        that clashes are checked against everything accepted so far); the accepted copies."""
        accepted: list[Placement] = []
        for c in sorted(clusters, key=lambda c: (-self.size_class[c.subunit], -c.score)):
            name, matrix = c.subunit, c.matrix
            ca = apply_matrix(self.subunits[name].xyz[self.clash_sel[name]], matrix)
            clash, which = clash_fraction(ca, [p.ca for p in self.placements],
                                          self.params.clash_distance)
            clash_with = self.placements[which].chain if which >= 0 else None
            reason = decide(c, self.params, self.placed[name], clash, clash_with)
            chain = None
            if not reason:
                chain = chain_id(len(self.placements))
                placement = Placement(chain, name, self.subunits[name].source, matrix, rnd, c, ca)
                self.placements.append(placement)
                accepted.append(placement)
                self.placed[name] += 1
                log.info("round %d: accepted %s cluster %d as chain %s (score %.3f, z %.1f)",
                         rnd, name, c.row["cluster_rank"], chain, c.score, c.z)
            self.decisions.append(decision_row(rnd, c, clash, clash_with, reason, chain))
        return accepted

    def zero_out(self, accepted: list[Placement]) -> str | None:
        """Zero the ``accepted`` copies' density out of the working map (:func:`zero_mask`) and
        prepare it again; returns why to stop, if the rounds are over."""
        p = self.params
        posed = [(apply_matrix(self.subunits[a.subunit].xyz, a.matrix), self.z_all[a.subunit])
                 for a in accepted]
        self.work.data[zero_mask(self.work, self.resolution, posed, p.zero_level)] = 0.0
        above = int((self.work.data > self.threshold).sum())
        self.footprint_left = above / max(self.fp0, 1)
        if self.footprint_left < p.stop_footprint:
            return f"footprint explained ({self.footprint_left:.1%} left)"
        try:
            self.prep = self.prepare(self.work)
        except InputError:
            return "no density left above the threshold"
        if p.copies and all(n in p.copies for n in self.subunits) and \
                not any(self.wanted(n) for n in self.subunits):
            return "all requested copies placed"
        return None


def place_subunits(dmap: DensityMap, subunits: dict[str, Atoms], params: CompositeParams,
                   threshold: float | None = None, resolution: float | None = None,
                   progress: bool | None = None) -> CompositeResult:
    """Place ``subunits`` (name -> Atoms in any frame) into ``dmap`` in rounds (compositing).

    Each round fits the subunits that still need copies into the working map, accepts
    clusters (:func:`decide`) and zeroes the accepted copies' density out of the working map
    (see the module docstring). Nothing is written: :func:`run_composite` writes the outputs.
    """
    t0 = time.perf_counter()
    for name in params.copies:
        if name not in subunits:
            raise InputError(f"--copies names {name!r}, which is not a subunit "
                             f"(subunits: {', '.join(sorted(subunits))})")
    run = _Rounds(dmap, subunits, params, threshold, resolution, progress)
    stop_reason, rnd = "max rounds reached", 0
    for rnd in range(1, params.max_rounds + 1):
        todo = [n for n in subunits if run.wanted(n)]
        if not todo:
            stop_reason = "all requested copies placed"
            break
        accepted = run.accept(rnd, run.fit_round(rnd, todo))
        if not accepted:
            stop_reason = "nothing more acceptable"
            break
        stop = run.zero_out(accepted)
        if stop:
            stop_reason = stop
            break
    else:
        rnd = params.max_rounds
    missing = {n: params.copies[n] - run.placed[n] for n in params.copies
               if run.placed[n] < params.copies[n]}
    return CompositeResult(run.placements, run.decisions, run.work, rnd, stop_reason,
                           run.footprint_left, time.perf_counter() - t0, missing,
                           run.threshold, run.resolution, run.sigmas)


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
                      str(p.round), str(p.cluster.row["cluster_rank"]),
                      f"{p.cluster.score:.4f}", str(p.cluster.row["hits"]),
                      gemmi.cif.quote(" ".join(f"{v:.5f}" for v in p.matrix))])
    if map_path:
        block.set_pair("_difffit_composite.map", gemmi.cif.quote(map_path))
    with atomic_write(path) as tmp:
        doc.write_file(str(tmp))
    return path


def write_composite_cxc(path: Path, map_file: str | None, threshold: float,
                        assembly: Path, residual: Path) -> Path:
    """ChimeraX script: the map at the threshold, the assembly, the residual (models numbered
    in that order; a path that a command cannot safely hold is only named in a comment, see
    :mod:`difffit_screen.report.chimerax`)."""
    from .report import cxc_comment, cxc_path, rel_path

    lines = ["# ChimeraX script written by difffit-screen composite: map, assembled model "
             "(one chain per copy) and residual map.", "close session"]
    model = 0

    def open_line(file: Path, what: str) -> str | None:
        rel = rel_path(Path(file).resolve(), path.parent.resolve())
        arg = cxc_path(rel)
        if arg is None:
            lines.append(f"# the {what} {cxc_comment(rel)} is not opened: its name holds "
                         "characters that a ChimeraX command cannot safely hold")
            return None
        nonlocal model
        model += 1
        lines.append(f"open {arg}")
        return f"#{model}"

    if map_file:
        ref = open_line(Path(map_file), "map")
        if ref:
            lines.append(f"volume {ref} level {threshold:.6g} style surface transparency 0.6")
    else:
        lines.append("# (no map file)")
    if open_line(assembly, "assembly"):
        lines += ["color bychain", "cartoon"]
    ref = open_line(residual, "residual map")
    if ref:
        lines += [f"volume {ref} level {threshold:.6g} style mesh color gray",
                  f"hide {ref} models"]
    lines.append("view")
    write_text(path, "\n".join(lines) + "\n")
    return path


def read_subunits(inputs: list[str], params: FitParams) -> tuple[dict[str, Atoms], list[dict]]:
    """The usable subunits of ``inputs`` (name -> Atoms) and a failure row for each other."""
    subunits: dict[str, Atoms] = {}
    failures: list[dict] = []
    for name, source, item in iter_candidates(inputs, params):
        reason = str(item) if isinstance(item, Exception) else None
        if reason is None:
            try:
                check_atoms(item, source)
                select = select_atoms(item, params.atoms)
                if int(select.sum()) < MIN_ATOMS:
                    reason = (f"{source}: too few atoms to fit in atom set "
                              f"'{params.atoms}' ({int(select.sum())})")
            except Exception as exc:
                reason = f"{source}: {type(exc).__name__}: {exc}"
        if reason is not None:
            log.warning("skipped subunit %s: %s", name, reason)
            failures.append({"candidate": name, "source": source, "stage": "read",
                             "reason": reason})
            continue
        subunits[name] = item
    return subunits, failures


def composite_record(result: CompositeResult, subunits: dict[str, Atoms], map_path: str,
                     params: CompositeParams) -> dict:
    """The run record (``assembly.json``, ``run.json``): settings, placed chains, failures."""
    return {
        "command": "composite", "map": str(map_path), "threshold": result.threshold,
        "resolution": result.resolution, "sigmas": list(result.sigmas),
        "rounds": result.rounds, "stop_reason": result.stop_reason,
        "footprint_left": result.footprint_left, "seconds": result.seconds,
        "missing_copies": result.missing,
        "placed": {n: sum(p.subunit == n for p in result.placements) for n in subunits},
        "chains": [{"chain": p.chain, "subunit": p.subunit, "source": p.source,
                    "matrix": [float(v) for v in p.matrix], "round": p.round,
                    "cluster_rank": int(p.cluster.row["cluster_rank"]),
                    "score": float(p.cluster.score), "z": float(p.cluster.z),
                    "rel": float(p.cluster.rel), "hits": int(p.cluster.row["hits"]),
                    "inside_fraction": float(p.cluster.inside_fraction)}
                   for p in result.placements],
        "params": {**{k: v for k, v in asdict(params).items() if k != "fit"},
                   "fit": asdict(params.fit)},
        "versions": software_versions(),
        "failures": result.failures,
        "complete": True,
    }


def run_composite(map_path: str, inputs: list[str], out_dir: str | Path,
                  params: CompositeParams, threshold: float | None = None,
                  resolution: float | None = None, progress: bool | None = None
                  ) -> CompositeResult:
    """Read the map and subunits, composite (:func:`place_subunits`), and write every output
    to ``out_dir`` (:data:`COMPOSITE_OUTPUTS`), which is locked meanwhile
    (:func:`~difffit_screen.outputs.lock_output_dir`: a second run into it is refused)."""
    out = prepare_output_dir(out_dir)
    with lock_output_dir(out):
        return _write_composite(out, map_path, inputs, params, threshold, resolution, progress)


def _write_composite(out: Path, map_path: str, inputs: list[str], params: CompositeParams,
                     threshold: float | None, resolution: float | None,
                     progress: bool | None) -> CompositeResult:
    """The body of :func:`run_composite`, in its locked output folder."""
    remove_previous_outputs(out, COMPOSITE_OUTPUTS)
    dmap = read_map(map_path)
    subunits, failures = read_subunits(inputs, params.fit)
    write_table(table_from_rows(failures, FAILURES_SCHEMA), out / "failures.parquet")
    if not subunits:
        raise InputError("no usable subunits" + (": " + "; ".join(f["reason"] for f in failures)
                                                 if failures else " given"))
    try:
        result = place_subunits(dmap, subunits, params, threshold, resolution, progress)
    except ContourError as exc:
        volumes = [len(a) * VOLUME_PER_ATOM_A3 for a in subunits.values()]
        raise exc.with_advice(float(np.median(volumes)), "the subunits (median)") from None
    result.failures = failures
    assembly = write_assembly(result, subunits, out / "assembly.cif", str(map_path))
    with atomic_write(out / "residual.mrc") as tmp:
        write_map(tmp, result.residual)
    write_table(table_from_rows(result.decisions, ROUNDS_SCHEMA), out / "rounds.parquet")
    fits = table_from_rows([{**p.cluster.row, "candidate": f"{p.chain}:{p.subunit}"}
                            for p in result.placements], FITS_SCHEMA)
    write_table(fits, out / "fits.parquet")
    write_table(rank_candidates(fits), out / "ranking.parquet")
    write_composite_cxc(out / "composite.cxc", str(map_path), result.threshold, assembly,
                        out / "residual.mrc")
    info = json.dumps(composite_record(result, subunits, map_path, params), indent=2,
                      default=str)
    write_text(out / "assembly.json", info)
    write_text(out / "run.json", info)
    return result
