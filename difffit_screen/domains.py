"""Library preparation: trim low-confidence residues and split predicted models into domains.

Full-length predicted models fit poorly as one rigid body: disordered tails and linkers float
outside any density, and domains move relative to each other. This module turns one model into
a list of compact domain candidates, each an :class:`~difffit_screen.structures.Atoms` of its own.

Steps (:func:`split_domains`)
-----------------------------
1. **Trim** (:func:`trim_low_confidence`): for predicted models (AlphaFold, ColabFold ...), whole
   residues whose pLDDT (B-factor column) is below ``plddt_min`` (default 70, the usual
   "confident" threshold of AlphaFold DB) are removed.
2. **Cluster** the remaining residues into domains:

   - *PAE route* (a predicted-aligned-error matrix is given, see :func:`read_pae`): the residues
     are the nodes of a graph with an edge of weight ``1 / PAE**pae_power`` between every pair
     whose (symmetrised) PAE is below ``pae_cutoff`` (5 Å), clustered by modularity at
     resolution 1: Louvain (seeded, default, fast) or greedy modularity (Clauset-Newman-Moore).
     This is Tristan Croll's ``pae_to_domains`` (as used by ChimeraX and DomainFit), with
     self-loops left out.
   - *Structure route* (no PAE): recursive bisection of the residue contact graph (CA-CA within
     ``contact_cutoff`` = 8 Å). Each bisection tries every partition of the current residue set,
     in sequence order, into one inner segment and the rest (one or two cut points, so a domain
     may be discontinuous, like the GroEL equatorial domain) and takes the one of lowest
     normalised cut ``cut/vol(A) + cut/vol(B)``. A split is kept when that value is below
     ``ncut_max`` (0.05) and both parts hold at least ``min_size`` residues; parts are split
     again the same way. The normalised cut is the compactness criterion: it is the fraction of
     each part's contacts that cross the interface, small only for two compact bodies that touch
     over a small face.

3. **Clean up**: runs of one label shorter than ``min_segment`` residues (15) are given to the
   domain they have most contacts (or PAE-graph weight) with; domains below ``min_size``
   residues (40) are merged into the domain they have most contacts with, or dropped when they
   touch none; domains above ``max_size`` (600) are bisected further at their best cut,
   whatever its value.
4. Each domain becomes an :class:`Atoms` named ``<accession or parent name>_D<n>``, ``n`` from 1
   in sequence order of each domain's first residue, with ``meta`` keys ``parent``,
   ``residue_ranges`` (``"A:1-133,A:409-523"``), ``domain_index``, ``n_domains``, ``n_residues``,
   ``n_pieces`` (stretches once trimmed residues are skipped: 2 for a domain interrupted by
   another), ``method``, ``mean_plddt``, ``compactness`` (radius of gyration over
   ``2.2 * n**0.38`` Å, about 1 for a compact globule) and ``plddt_min`` (the cut-off applied,
   or ``None``), besides the parent's own keys (``accession`` ...).

Residues are the polymer residues of the model in file order (the order of the PAE matrix rows).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from .errors import InputError
from .structures import Atoms

log = logging.getLogger(__name__)

DEFAULT_PLDDT_MIN = 70.0
DEFAULT_MIN_SIZE = 40
DEFAULT_MAX_SIZE = 600
DEFAULT_MIN_SEGMENT = 15
DEFAULT_CONTACT_CUTOFF = 8.0
DEFAULT_NCUT_MAX = 0.05
DEFAULT_COMPACT_MAX = 2.0
DEFAULT_PAE_CUTOFF = 5.0
DEFAULT_PAE_POWER = 1.0
DEFAULT_PAE_RESOLUTION = 1.0
DEFAULT_PAE_METHOD = "louvain"
PREDICTED_MARKERS = ("alphafold", "afdb", "colabfold", "esmfold", "predicted", "af-")
PAE_NAME = re.compile(r"^AF-(?P<acc>[^-]+)-F(?P<frag>\d+)-predicted_aligned_error(_v\d+)?\.json$")
MODEL_NAME = re.compile(r"^AF-(?P<acc>[^-]+)-F\d+-model(_v\d+)?$")


# --- residues ----------------------------------------------------------------------------------

@dataclass
class Residues:
    """Per-residue view of the polymer residues of an :class:`Atoms`.

    Attributes
    ----------
    atom_residue : np.ndarray
        ``(N,)`` int64 residue index of each atom, -1 for non-polymer atoms.
    xyz : np.ndarray
        ``(R, 3)`` float64 representative coordinates (CA, else P, else the residue centroid).
    chain : np.ndarray
        ``(R,)`` chain names.
    res_seq : np.ndarray
        ``(R,)`` int residue numbers.
    ins_code : np.ndarray
        ``(R,)`` insertion codes.
    plddt : np.ndarray
        ``(R,)`` float64 mean B-factor of each residue's atoms (pLDDT for predicted models).
    """

    atom_residue: np.ndarray
    xyz: np.ndarray
    chain: np.ndarray
    res_seq: np.ndarray
    ins_code: np.ndarray
    plddt: np.ndarray

    def __len__(self) -> int:
        return int(self.xyz.shape[0])


def index_residues(atoms: Atoms) -> Residues:
    """Group the polymer atoms of ``atoms`` into residues, in file order.

    A new residue starts wherever chain, residue number or insertion code changes between
    consecutive polymer atoms.
    """
    n = len(atoms)
    atom_residue = np.full(n, -1, dtype=np.int64)
    poly = np.flatnonzero(atoms.polymer)
    if poly.size == 0:
        empty = np.array([], dtype=str)
        return Residues(atom_residue, np.zeros((0, 3)), empty, np.zeros(0, int), empty,
                        np.zeros(0))
    ch, rs, ic = atoms.chain[poly], atoms.res_seq[poly], atoms.ins_code[poly]
    new = np.ones(poly.size, dtype=bool)
    new[1:] = (ch[1:] != ch[:-1]) | (rs[1:] != rs[:-1]) | (ic[1:] != ic[:-1])
    rid = np.cumsum(new) - 1
    atom_residue[poly] = rid
    n_res = int(rid[-1]) + 1
    counts = np.bincount(rid, minlength=n_res).astype(np.float64)
    xyz = np.stack([np.bincount(rid, atoms.xyz[poly, k], n_res) for k in range(3)], 1)
    xyz /= counts[:, None]
    plddt = np.bincount(rid, atoms.b_iso[poly].astype(np.float64), n_res) / counts
    for name in ("P", "CA"):  # CA wins over P over the centroid
        sel = atoms.atom_name[poly] == name
        xyz[rid[sel]] = atoms.xyz[poly][sel]
    first = np.flatnonzero(new)
    return Residues(atom_residue, xyz, ch[first], rs[first].astype(int), ic[first], plddt)


def format_residue_ranges(res: Residues, idx: np.ndarray) -> str:
    """Return residues ``idx`` (sorted residue indices) as ranges, e.g. ``"A:1-133,A:409-523"``.

    A range ends where the chain changes or the residue number jumps by more than one.
    """
    idx = np.sort(np.asarray(idx, dtype=np.int64))
    if idx.size == 0:
        return ""
    ch, rs = res.chain[idx], res.res_seq[idx]
    brk = np.ones(idx.size, dtype=bool)
    brk[1:] = (ch[1:] != ch[:-1]) | ((rs[1:] - rs[:-1]) > 1) | ((rs[1:] - rs[:-1]) < 0)
    starts = np.flatnonzero(brk)
    ends = np.r_[starts[1:] - 1, idx.size - 1]
    return ",".join(f"{ch[s]}:{rs[s]}-{rs[e]}" for s, e in zip(starts, ends, strict=True))


# --- pLDDT trimming ----------------------------------------------------------------------------

def looks_like_plddt(atoms: Atoms) -> bool:
    """True if the B-factors could be pLDDT: all within [0, 100] and not all equal."""
    b = atoms.b_iso
    return bool(len(b) and b.min() >= 0 and b.max() <= 100 and b.max() > b.min())


def is_predicted_model(atoms: Atoms) -> bool:
    """Guess whether ``atoms`` is a predicted model whose B-factors are pLDDT.

    True when ``meta["predicted"]`` is true, or when the name, the source path or a string value
    of ``meta`` names a predictor or predicted-model database (AlphaFold, AFDB, ColabFold,
    ESMFold, an ``AF-`` id); and in all cases only if :func:`looks_like_plddt`.
    """
    if not looks_like_plddt(atoms):
        return False
    if atoms.meta.get("predicted") is not None:
        return bool(atoms.meta["predicted"])
    texts = [atoms.name, Path(atoms.source).name if atoms.source else "", atoms.source]
    texts += [v for v in atoms.meta.values() if isinstance(v, str)]
    low = " ".join(texts).lower()
    return any(m in low for m in PREDICTED_MARKERS)


def low_confidence_residues(atoms: Atoms, plddt_min: float) -> np.ndarray:
    """Return a ``(R,)`` bool mask of the polymer residues with mean pLDDT below ``plddt_min``."""
    return index_residues(atoms).plddt < float(plddt_min)


def trim_low_confidence(atoms: Atoms, plddt_min: float = DEFAULT_PLDDT_MIN) -> Atoms:
    """Remove whole residues whose pLDDT (B-factor) is below ``plddt_min``.

    The caller decides whether the B-factors are pLDDT (see :func:`is_predicted_model`). A
    residue's pLDDT is the mean over its atoms (AlphaFold writes one value per residue).
    Non-polymer atoms are kept. ``meta["plddt_min"]`` and ``meta["n_trimmed_residues"]`` record
    what was done.

    Returns
    -------
    Atoms
        The kept atoms (possibly none).
    """
    res = index_residues(atoms)
    low = res.plddt < float(plddt_min)
    keep = (res.atom_residue < 0) | ~low[np.maximum(res.atom_residue, 0)]
    out = atoms.subset(keep)
    out.meta["plddt_min"] = float(plddt_min)
    out.meta["n_trimmed_residues"] = int(low.sum())
    return out


# --- PAE -----------------------------------------------------------------------------------

def read_pae(path: str | os.PathLike) -> np.ndarray:
    """Read a predicted-aligned-error matrix from JSON (optionally ``.gz``).

    Layouts understood:

    - AlphaFold DB v1/v2: ``[{"residue1": [...], "residue2": [...], "distance": [...],
      "max_predicted_aligned_error": m}]``, flat arrays over all pairs, residues numbered from 1;
    - AlphaFold DB v3 and later: ``[{"predicted_aligned_error": [[...], ...],
      "max_predicted_aligned_error": m}]``;
    - a bare dict with ``predicted_aligned_error`` (AlphaFold DB v3+ without the list, ColabFold
      ``*_scores*.json``) or ``pae`` (ColabFold, AlphaFold 3 ``*_full_data*.json``).

    Returns
    -------
    np.ndarray
        ``(R, R)`` float32 PAE in Å; row ``i``, column ``j`` is the expected error at residue
        ``j`` when aligned on residue ``i``.

    Raises
    ------
    InputError
        If the file is missing, not JSON, or holds none of these layouts or a non-square matrix.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: PAE file not found")
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read PAE JSON ({exc})") from None
    if isinstance(data, list):
        if not data or not isinstance(data[0], dict):
            raise InputError(f"{path}: PAE JSON list does not hold a dict")
        data = data[0]
    if not isinstance(data, dict):
        raise InputError(f"{path}: PAE JSON is neither a list nor a dict")
    pae = _pae_from_dict(data, path)
    if pae.ndim != 2 or pae.shape[0] != pae.shape[1] or pae.shape[0] == 0:
        raise InputError(f"{path}: PAE matrix is not square (shape {pae.shape})")
    if not np.all(np.isfinite(pae)):
        raise InputError(f"{path}: PAE matrix holds non-finite values")
    return pae


def _pae_from_dict(data: dict, path: Path) -> np.ndarray:
    for key in ("predicted_aligned_error", "pae"):
        if key in data:
            return np.asarray(data[key], dtype=np.float32)
    if {"residue1", "residue2", "distance"} <= data.keys():
        r1 = np.asarray(data["residue1"], dtype=np.int64) - 1
        r2 = np.asarray(data["residue2"], dtype=np.int64) - 1
        d = np.asarray(data["distance"], dtype=np.float32)
        if not (r1.shape == r2.shape == d.shape) or r1.size == 0 or min(r1.min(), r2.min()) < 0:
            raise InputError(f"{path}: PAE residue1/residue2/distance arrays do not match")
        n = int(max(r1.max(), r2.max())) + 1
        pae = np.full((n, n), np.nan, dtype=np.float32)
        pae[r1, r2] = d
        return pae
    raise InputError(f"{path}: no PAE matrix (keys {sorted(data)[:6]})")


def find_pae_file(pae_dir: str | os.PathLike, name: str, accession: str | None = None
                  ) -> Path | None:
    """Find the PAE JSON of model ``name`` (or ``accession``) in ``pae_dir``.

    Tries ``<name>.json``, ``<name>_pae.json``, the AlphaFold DB name
    ``AF-<acc>-F1-predicted_aligned_error_v<N>.json`` (highest ``N`` first; ``acc`` is
    ``accession``, else the accession in an ``AF-<acc>-F1-model_v<N>`` name, else ``name``), each
    also gzipped.
    """
    pae_dir = Path(pae_dir)
    m = MODEL_NAME.match(name)
    acc = accession or (m.group("acc") if m else name)
    for stem in (name, f"{name}_pae", f"{name}.pae", acc, f"{acc}_pae"):
        for suffix in (".json", ".json.gz"):
            if (pae_dir / f"{stem}{suffix}").is_file():
                return pae_dir / f"{stem}{suffix}"
    hits = sorted(pae_dir.glob(f"AF-{acc}-F1-predicted_aligned_error*.json*"),
                  key=lambda p: _version_of(p.name), reverse=True)
    return hits[0] if hits else None


def _version_of(filename: str) -> int:
    m = re.search(r"_v(\d+)\.json", filename)
    return int(m.group(1)) if m else 0


# --- contact graph and bisection ---------------------------------------------------------------

def contact_matrix(xyz: np.ndarray, cutoff: float = DEFAULT_CONTACT_CUTOFF) -> np.ndarray:
    """Return the ``(R, R)`` float64 0/1 contact matrix of residues within ``cutoff`` Å.

    Parameters
    ----------
    xyz : np.ndarray
        ``(R, 3)`` representative residue coordinates in Å.
    """
    n = len(xyz)
    w = np.zeros((n, n), dtype=np.float64)
    if n < 2:
        return w
    pairs = cKDTree(xyz).query_pairs(cutoff, output_type="ndarray")
    w[pairs[:, 0], pairs[:, 1]] = 1.0
    w[pairs[:, 1], pairs[:, 0]] = 1.0
    return w


def score_bisections(w: np.ndarray, min_size: int, min_segment: int) -> np.ndarray:
    """Normalised cut of every split of ``R`` ordered residues into a segment and the rest.

    Part A is the segment ``[i, j)`` of the given order, part B the rest (one or two segments),
    so every one-cut and two-cut partition is scored at once from 2-D prefix sums of ``w``.

    Parameters
    ----------
    w : np.ndarray
        ``(R, R)`` symmetric non-negative affinity (contact) matrix.
    min_size : int
        Smallest part, in residues; smaller splits score ``inf``.
    min_segment : int
        Smallest piece of B left at either end, in residues (unless empty).

    Returns
    -------
    np.ndarray
        ``(R + 1, R + 1)`` normalised cut ``cut/vol(A) + cut/vol(B)`` at ``[i, j]``; ``inf``
        where ``j <= i`` or the split breaks a size limit.
    """
    n = len(w)
    p = np.zeros((n + 1, n + 1))
    p[1:, 1:] = w.cumsum(0).cumsum(1)
    i = np.arange(n + 1)[:, None]
    j = np.arange(n + 1)[None, :]

    def block(r0, r1, c0, c1):
        return p[r1, c1] - p[r0, c1] - p[r1, c0] + p[r0, c0]

    intra_a = block(i, j, i, j)
    cut = block(i, j, 0, i) + block(i, j, j, n)
    intra_b = p[n, n] - intra_a - 2 * cut
    size_a = j - i
    ok = (size_a >= min_size) & (n - size_a >= min_size)
    ok &= ((i == 0) | (i >= min_segment)) & ((j == n) | (n - j >= min_segment))
    with np.errstate(divide="ignore", invalid="ignore"):
        ncut = cut / (intra_a + cut) + cut / (intra_b + cut)
    ncut = np.where(ok & np.isfinite(ncut), ncut, np.inf)
    return ncut


def best_bisection(w: np.ndarray, min_size: int, min_segment: int
                   ) -> tuple[float, np.ndarray | None]:
    """Return ``(ncut, mask)`` of the lowest-cut split (see :func:`score_bisections`).

    ``mask`` is ``(R,)`` bool, True in part A; ``None`` when no split meets the size limits.
    """
    n = len(w)
    if n < 2 * min_size:
        return np.inf, None
    ncut = score_bisections(w, min_size, min_segment)
    i, j = np.unravel_index(int(np.argmin(ncut)), ncut.shape)
    if not np.isfinite(ncut[i, j]):
        return np.inf, None
    mask = np.zeros(n, dtype=bool)
    mask[i:j] = True
    return float(ncut[i, j]), mask


def bisect_recursively(w: np.ndarray, xyz: np.ndarray, min_size: int, max_size: int,
                       min_segment: int, ncut_max: float,
                       compact_max: float | None = None) -> np.ndarray:
    """Label residues by recursive bisection of the contact graph ``w`` (``(R, R)``).

    A part is split when its best normalised cut is below ``ncut_max / 4``, or below
    ``ncut_max`` with both halves compact (:func:`compactness` at most ``compact_max``, default
    :data:`DEFAULT_COMPACT_MAX`), or, whatever the cut, when it holds more than ``max_size``
    residues. So a rod (a coiled coil, a row of repeats) is cut only where it barely touches.

    Parameters
    ----------
    w : np.ndarray
        ``(R, R)`` contact matrix.
    xyz : np.ndarray
        ``(R, 3)`` residue coordinates in Å, for the compactness test.

    Returns
    -------
    np.ndarray
        ``(R,)`` int64 labels ``0 .. k-1``.
    """
    compact_max = DEFAULT_COMPACT_MAX if compact_max is None else compact_max
    labels = np.zeros(len(w), dtype=np.int64)
    stack = [np.arange(len(w))]
    next_label = 1
    while stack:
        idx = stack.pop()
        score, mask = best_bisection(w[np.ix_(idx, idx)], min_size, min_segment)
        if mask is None:
            continue
        compact = max(compactness(xyz[idx[mask]]), compactness(xyz[idx[~mask]])) <= compact_max
        if not (len(idx) > max_size or score < ncut_max / 4 or (score < ncut_max and compact)):
            continue
        labels[idx[mask]] = next_label
        next_label += 1
        stack += [idx[mask], idx[~mask]]
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


# --- PAE clustering ----------------------------------------------------------------------------

def pae_graph_weights(pae: np.ndarray, pae_cutoff: float = DEFAULT_PAE_CUTOFF,
                      pae_power: float = DEFAULT_PAE_POWER) -> np.ndarray:
    """Edge weights ``1 / PAE**pae_power`` where the symmetrised PAE is below ``pae_cutoff``.

    Parameters
    ----------
    pae : np.ndarray
        ``(R, R)`` PAE in Å.

    Returns
    -------
    np.ndarray
        ``(R, R)`` float64 symmetric weights, 0 on the diagonal and where there is no edge.
    """
    sym = 0.5 * (pae.astype(np.float64) + pae.T.astype(np.float64))
    w = np.zeros_like(sym)
    edge = sym < pae_cutoff
    np.fill_diagonal(edge, False)
    w[edge] = 1.0 / np.maximum(sym[edge], 1e-3) ** pae_power
    return w


def cluster_pae(pae: np.ndarray, pae_cutoff: float = DEFAULT_PAE_CUTOFF,
                pae_power: float = DEFAULT_PAE_POWER,
                resolution: float = DEFAULT_PAE_RESOLUTION,
                method: str = DEFAULT_PAE_METHOD, seed: int = 0) -> np.ndarray:
    """Cluster residues on the PAE graph by modularity (``pae_to_domains``).

    Parameters
    ----------
    pae : np.ndarray
        ``(R, R)`` PAE in Å.
    method : {"louvain", "greedy"}
        ``louvain`` (default; networkx Louvain, seeded, the fast path like Croll's Leiden option,
        about 1 s for 500 residues) or ``greedy`` (Clauset-Newman-Moore greedy modularity, the
        deterministic default of ``pae_to_domains``, about 6x slower).
    seed : int
        Seed of the Louvain node order.

    Returns
    -------
    np.ndarray
        ``(R,)`` int64 labels; residues without any edge get a label of their own.
    """
    import networkx as nx
    from networkx.algorithms.community import greedy_modularity_communities, louvain_communities

    w = pae_graph_weights(pae, pae_cutoff, pae_power)
    n = len(w)
    rows, cols = np.nonzero(np.triu(w, 1))
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from(zip(rows.tolist(), cols.tolist(), w[rows, cols].tolist(),
                                  strict=True))
    labels = np.full(n, -1, dtype=np.int64)
    if method not in ("louvain", "greedy"):
        raise InputError(f"PAE clustering method {method!r} is not louvain or greedy")
    if g.number_of_edges():
        if method == "greedy":
            communities = greedy_modularity_communities(g, weight="weight", resolution=resolution)
        else:
            communities = louvain_communities(g, weight="weight", resolution=resolution,
                                              seed=seed)
        for k, community in enumerate(communities):
            labels[list(community)] = k
    lone = labels < 0
    labels[lone] = labels.max() + 1 + np.arange(int(lone.sum()))
    return labels


# --- clean-up ----------------------------------------------------------------------------------

def label_runs(labels: np.ndarray, breaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of runs of equal labels, also cut at chain ``breaks``.

    Parameters
    ----------
    labels : np.ndarray
        ``(R,)`` labels in sequence order.
    breaks : np.ndarray
        ``(R,)`` bool, True where a new chain starts.
    """
    new = np.ones(len(labels), dtype=bool)
    new[1:] = (labels[1:] != labels[:-1]) | breaks[1:]
    starts = np.flatnonzero(new)
    return starts, np.r_[starts[1:], len(labels)]


def affinity_to_labels(w: np.ndarray, sel: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Total affinity ``w`` from residues ``sel`` to each label: ``(k,)``, ``k = max(labels)+1``."""
    k = int(labels.max()) + 1
    return np.bincount(labels, weights=w[sel].sum(0), minlength=k)


def absorb_short_segments(labels: np.ndarray, w: np.ndarray, breaks: np.ndarray,
                          min_segment: int) -> np.ndarray:
    """Give each run shorter than ``min_segment`` to the domain it has most affinity with.

    A run is a stretch of one label between label changes and ``breaks`` (chain starts, gaps
    left by trimming or missing residues). Its affinity to each label is the summed ``w`` to
    that label's other residues; a run with no affinity to anything is dropped (label -1).
    Repeated until nothing changes.

    Parameters
    ----------
    labels : np.ndarray
        ``(R,)`` labels, -1 for residues left out.
    w : np.ndarray
        ``(R, R)`` affinity (contacts or PAE-graph weights).
    breaks : np.ndarray
        ``(R,)`` bool, True where a new piece of chain starts.
    """
    labels = labels.copy()
    for _ in range(10):
        changed = False
        starts, ends = label_runs(labels, breaks)
        for r in np.argsort(ends - starts, kind="stable"):
            s, e = starts[r], ends[r]
            if e - s >= min_segment or labels[s] < 0:
                continue
            valid = labels >= 0
            valid[s:e] = False
            aff = np.bincount(labels[valid], weights=w[s:e][:, valid].sum(0),
                              minlength=int(labels.max()) + 1)
            new = int(np.argmax(aff)) if aff.size and aff.max() > 0 else -1
            if new != labels[s]:
                labels[s:e] = new
                changed = True
        if not changed:
            break
    return relabel(labels)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Renumber labels ``0 .. k-1`` keeping their order; -1 stays -1."""
    out = np.full(len(labels), -1, dtype=np.int64)
    valid = labels >= 0
    out[valid] = np.unique(labels[valid], return_inverse=True)[1]
    return out


def count_pieces(labels: np.ndarray, d: int) -> int:
    """Number of separate stretches of label ``d`` in ``labels`` once left-out (-1) residues
    are skipped: 1 for a continuous domain, 2 for the GroEL equatorial domain."""
    seq = labels[labels >= 0] == d
    return int(seq[0]) + int(np.count_nonzero(seq[1:] & ~seq[:-1])) if seq.size else 0


def merge_small_domains(labels: np.ndarray, w: np.ndarray, min_size: int) -> np.ndarray:
    """Merge domains below ``min_size`` residues into their best-connected domain, or drop them.

    Returns
    -------
    np.ndarray
        ``(R,)`` int64 labels ``0 .. k-1``, -1 for dropped residues.
    """
    labels = labels.copy()
    while True:
        valid = labels >= 0
        if not valid.any():
            return labels
        counts = np.bincount(labels[valid])
        small = [c for c in np.argsort(counts, kind="stable") if 0 < counts[c] < min_size]
        if not small:
            break
        c = small[0]
        sel = np.flatnonzero(labels == c)
        aff = np.bincount(labels[valid], weights=w[sel][:, valid].sum(0), minlength=len(counts))
        aff[c] = 0
        labels[sel] = int(np.argmax(aff)) if aff.max() > 0 and len(counts) > 1 else -1
    out = np.full_like(labels, -1)
    out[labels >= 0] = np.unique(labels[labels >= 0], return_inverse=True)[1]
    return out


def split_large_domains(labels: np.ndarray, w: np.ndarray, xyz: np.ndarray, max_size: int,
                        min_size: int, min_segment: int) -> np.ndarray:
    """Bisect domains above ``max_size`` residues at their best cut until none is left.

    ``w`` is the ``(R, R)`` contact matrix, ``xyz`` the ``(R, 3)`` residue coordinates.
    """
    labels = labels.copy()
    for c in range(int(labels.max()) + 1 if labels.size else 0):
        idx = np.flatnonzero(labels == c)
        if len(idx) <= max_size:
            continue
        sub = bisect_recursively(w[np.ix_(idx, idx)], xyz[idx], min(min_size, len(idx) // 2),
                                 max_size, min_segment, ncut_max=-np.inf)
        labels[idx[sub > 0]] = labels.max() + sub[sub > 0]
    return labels


def order_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber labels ``0 .. k-1`` by each label's first residue; -1 stays -1."""
    out = np.full_like(labels, -1)
    valid = labels >= 0
    if valid.any():
        _, first = np.unique(labels[valid], return_index=True)
        order = np.argsort(np.argsort(first))
        out[valid] = order[np.unique(labels[valid], return_inverse=True)[1]]
    return out


def radius_of_gyration(xyz: np.ndarray) -> float:
    """Radius of gyration in Å of ``(R, 3)`` points."""
    return float(np.sqrt(((xyz - xyz.mean(0)) ** 2).sum(1).mean())) if len(xyz) else 0.0


def compactness(xyz: np.ndarray) -> float:
    """Radius of gyration of ``(R, 3)`` residue points over ``2.2 * R**0.38`` Å.

    About 1 for a compact globular domain, 2 or more for rods and extended chains.
    """
    return radius_of_gyration(xyz) / (2.2 * max(len(xyz), 1) ** 0.38)


# --- top level ---------------------------------------------------------------------------------

def assign_domains(res: Residues, pae: np.ndarray | None = None, min_size: int = DEFAULT_MIN_SIZE,
                   max_size: int = DEFAULT_MAX_SIZE, min_segment: int = DEFAULT_MIN_SEGMENT,
                   contact_cutoff: float = DEFAULT_CONTACT_CUTOFF,
                   ncut_max: float = DEFAULT_NCUT_MAX,
                   compact_max: float = DEFAULT_COMPACT_MAX, pae_cutoff: float = DEFAULT_PAE_CUTOFF,
                   pae_power: float = DEFAULT_PAE_POWER,
                   pae_resolution: float = DEFAULT_PAE_RESOLUTION,
                   pae_method: str = DEFAULT_PAE_METHOD, seed: int = 0) -> np.ndarray:
    """Domain label of each residue of ``res``.

    Parameters
    ----------
    res : Residues
        The residues (``R`` of them) to split.
    pae : np.ndarray, optional
        ``(R, R)`` PAE of exactly these residues; without it the contact graph is used.

    Returns
    -------
    np.ndarray
        ``(R,)`` int64 labels ``0 .. k-1`` in order of each domain's first residue, -1 for
        residues left out (parts of fewer than ``min_size`` residues with no contact to a
        domain).
    """
    n = len(res)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    contacts = contact_matrix(res.xyz, contact_cutoff)
    breaks = np.zeros(n, dtype=bool)
    breaks[1:] = (res.chain[1:] != res.chain[:-1]) | (np.abs(np.diff(res.res_seq)) > 1)
    if pae is not None:
        labels = cluster_pae(pae, pae_cutoff, pae_power, pae_resolution, pae_method, seed)
        affinity = pae_graph_weights(pae, pae_cutoff, pae_power) + contacts * 1e-6
    else:
        labels = bisect_recursively(contacts, res.xyz, min_size, max_size, min_segment, ncut_max,
                                    compact_max)
        affinity = contacts
    labels = absorb_short_segments(labels, affinity, breaks, min_segment)
    labels = merge_small_domains(labels, affinity, min_size)
    if (labels >= 0).any():
        labels = split_large_domains(labels, contacts, res.xyz, max_size, min_size, min_segment)
    return order_labels(labels)


def split_domains(
    atoms: Atoms,
    pae: np.ndarray | None = None,
    plddt_min: float | None = DEFAULT_PLDDT_MIN,
    min_size: int = DEFAULT_MIN_SIZE,
    max_size: int = DEFAULT_MAX_SIZE,
    predicted: bool | None = None,
    **kw,
) -> list[Atoms]:
    """Trim low-confidence residues and split a model into domain candidates.

    Parameters
    ----------
    atoms : Atoms
        One model (all chains are split together; non-polymer atoms are left out).
    pae : np.ndarray, optional
        ``(R, R)`` PAE matrix over the model's polymer residues in file order (see
        :func:`read_pae`); without it domains come from the structure alone.
    plddt_min : float or None
        pLDDT cut-off for :func:`trim_low_confidence` (default 70); ``None`` never trims.
    min_size, max_size : int
        Smallest and largest domain in residues (defaults 40 and 600).
    predicted : bool, optional
        Whether B-factors are pLDDT; ``None`` guesses (:func:`is_predicted_model`; a given PAE
        counts as evidence). Trimming is skipped for models that are not predicted, and for
        B-factors that cannot be pLDDT (:func:`looks_like_plddt`) whatever ``predicted`` says.
    **kw
        Passed to :func:`assign_domains` (``min_segment``, ``contact_cutoff``, ``ncut_max``,
        ``compact_max``, ``pae_cutoff``, ``pae_power``, ``pae_resolution``, ``pae_method``,
        ``seed``).

    Returns
    -------
    list of Atoms
        One per domain, named ``<accession or name>_D<n>`` in order of first residue; empty when
        nothing is left after trimming or every part is below ``min_size``.

    Raises
    ------
    InputError
        If ``pae`` does not match the number of polymer residues.
    """
    res_all = index_residues(atoms)
    if pae is not None:
        pae = np.asarray(pae)
        if pae.shape != (len(res_all), len(res_all)):
            raise InputError(f"{atoms.name}: PAE matrix is {pae.shape[0]}x{pae.shape[1]} but the "
                             f"model has {len(res_all)} polymer residues")
    if predicted is None:
        predicted = pae is not None or is_predicted_model(atoms)
    if predicted and not looks_like_plddt(atoms):
        log.warning("%s: B-factors are outside 0-100 or all equal, so not pLDDT; not trimming",
                    atoms.name)
        predicted = False
    kept = np.ones(len(res_all), dtype=bool)
    if predicted and plddt_min is not None:
        kept = res_all.plddt >= float(plddt_min)
    kept_idx = np.flatnonzero(kept)
    res = _take_residues(res_all, kept_idx)
    sub_pae = pae[np.ix_(kept_idx, kept_idx)] if pae is not None else None
    labels = assign_domains(res, sub_pae, min_size=min_size, max_size=max_size, **kw)
    method = "contacts"
    if pae is not None:
        pm = kw.get("pae_method", DEFAULT_PAE_METHOD)
        method = f"pae:{pm}" + (f"(seed={kw.get('seed', 0)})" if pm == "louvain" else "")
    n_dom = int(labels.max()) + 1 if (labels >= 0).any() else 0
    base = str(atoms.meta.get("accession") or atoms.name)
    out = []
    for d in range(n_dom):
        members = kept_idx[labels == d]
        atom_mask = np.isin(res_all.atom_residue, members)
        dom = atoms.subset(atom_mask, name=f"{base}_D{d + 1}")
        dom.meta.update(
            parent=atoms.name,
            residue_ranges=format_residue_ranges(res_all, members),
            domain_index=d + 1,
            n_domains=n_dom,
            n_residues=len(members),
            method=method,
            plddt_min=float(plddt_min) if (predicted and plddt_min is not None) else None,
            mean_plddt=float(res_all.plddt[members].mean()),
            compactness=compactness(res_all.xyz[members]),
            n_pieces=count_pieces(labels, d),
        )
        out.append(dom)
    return out


def _take_residues(res: Residues, idx: np.ndarray) -> Residues:
    return Residues(np.zeros(0, np.int64), res.xyz[idx], res.chain[idx], res.res_seq[idx],
                    res.ins_code[idx], res.plddt[idx])


# --- files and the ``domains`` command ---------------------------------------------------------

TABLE_COLUMNS = ("name", "parent", "accession", "domain_index", "n_domains", "residue_ranges",
                 "n_residues", "n_atoms", "n_segments", "n_pieces", "mean_plddt", "compactness",
                 "method", "plddt_min", "pae_file", "source", "path")


def sniff_predicted(path: str | os.PathLike, n_bytes: int = 8192) -> bool:
    """True if the head of a structure file names AlphaFold or holds ModelCIF pLDDT records."""
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", errors="replace") as fh:
            head = fh.read(n_bytes).lower()
    except OSError:
        return False
    return any(m in head for m in ("alphafold", "colabfold", "esmfold", "_ma_qa_metric"))


def load_model(path: str | os.PathLike) -> Atoms:
    """Read a model file, noting in ``meta`` an AlphaFold DB accession and whether it is predicted.

    ``meta["accession"]`` is set from an ``AF-<acc>-F1-model_v<N>`` file name (if not already
    there) and ``meta["predicted"]`` is set True when :func:`sniff_predicted` finds a predictor in
    the file's head.
    """
    from .structures import read_structure

    atoms = read_structure(path)
    m = MODEL_NAME.match(atoms.name)
    if m and "accession" not in atoms.meta:
        atoms.meta["accession"] = m.group("acc")
    if sniff_predicted(path):
        atoms.meta["predicted"] = True
    return atoms


def domain_row(dom: Atoms, path: str = "", pae_file: str = "") -> dict:
    """One ``domains.parquet`` row (see :data:`TABLE_COLUMNS`) for domain ``dom``."""
    meta = dom.meta
    ranges = meta.get("residue_ranges", "")
    return {
        "name": dom.name, "parent": meta.get("parent", ""),
        "accession": str(meta.get("accession") or ""),
        "domain_index": int(meta.get("domain_index", 0)),
        "n_domains": int(meta.get("n_domains", 0)), "residue_ranges": ranges,
        "n_residues": int(meta.get("n_residues", 0)), "n_atoms": len(dom),
        "n_segments": len(ranges.split(",")) if ranges else 0,
        "n_pieces": int(meta.get("n_pieces", 0)),
        "mean_plddt": float(meta.get("mean_plddt", np.nan)),
        "compactness": float(meta.get("compactness", np.nan)),
        "method": meta.get("method", ""),
        "plddt_min": float(meta["plddt_min"]) if meta.get("plddt_min") is not None else np.nan,
        "pae_file": pae_file, "source": dom.source, "path": path,
    }


def write_domain_table(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write domain rows to Parquet with the columns of :data:`TABLE_COLUMNS`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    cols = {c: [r[c] for r in rows] for c in TABLE_COLUMNS}
    int_cols = {"domain_index", "n_domains", "n_residues", "n_atoms", "n_segments", "n_pieces"}
    float_cols = {"mean_plddt", "compactness", "plddt_min"}
    arrays = {c: pa.array(v, type=pa.int64() if c in int_cols else
                          pa.float64() if c in float_cols else pa.string())
              for c, v in cols.items()}
    from .outputs import atomic_write

    with atomic_write(path) as tmp:
        pq.write_table(pa.table(arrays), tmp)
    return path


def summarize_domains(n_models: int, per_model: list[int], sizes: list[int],
                      n_failed: int = 0) -> dict:
    """Summary statistics: models, domains, domain sizes and a domains-per-model histogram."""
    sizes_a = np.asarray(sizes, dtype=np.int64)
    hist = np.bincount(np.asarray(per_model, dtype=np.int64)) if per_model else np.zeros(1, int)
    return {
        "models": int(n_models), "failed": int(n_failed), "domains": int(sizes_a.size),
        "size_min": int(sizes_a.min()) if sizes_a.size else 0,
        "size_median": float(np.median(sizes_a)) if sizes_a.size else 0.0,
        "size_max": int(sizes_a.max()) if sizes_a.size else 0,
        "size_quartiles": [float(q) for q in np.percentile(sizes_a, [25, 75])]
        if sizes_a.size else [0.0, 0.0],
        "domains_per_model": {str(k): int(v) for k, v in enumerate(hist) if v},
    }


def format_summary(summary: dict) -> str:
    """Human-readable lines of :func:`summarize_domains` output."""
    hist = ", ".join(f"{k}: {v}" for k, v in summary["domains_per_model"].items())
    return (f"models: {summary['models']} ({summary['failed']} failed)\n"
            f"domains: {summary['domains']}; residues per domain min {summary['size_min']}, "
            f"median {summary['size_median']:g}, max {summary['size_max']}\n"
            f"domains per model (count: models): {hist}")


def expand_model_paths(paths: list[str]) -> list[Path]:
    """Structure files among ``paths``, folders expanded to their structure files (sorted)."""
    from .structures import is_structure_file

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and is_structure_file(f))
        else:
            out.append(p)
    return out


def add_domains_arguments(p) -> None:
    """Add the ``domains`` sub-command's options to argparse parser ``p``."""
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="structure files (PDB/mmCIF, optionally .gz) or folders of them")
    p.add_argument("--out", required=True, help="output folder for <name>_D<n>.cif and "
                                                "domains.parquet")
    p.add_argument("--pae-dir", help="folder of PAE JSON files (AlphaFold DB "
                                     "AF-<acc>-F1-predicted_aligned_error_v<N>.json or "
                                     "<name>.json); models without one are split by structure")
    p.add_argument("--plddt-min", type=float, default=DEFAULT_PLDDT_MIN,
                   help="drop residues of predicted models below this pLDDT "
                        f"(default {DEFAULT_PLDDT_MIN:g}; a negative value never trims)")
    p.add_argument("--predicted", choices=("auto", "yes", "no"), default="auto",
                   help="whether B-factors are pLDDT (default auto: AlphaFold names/headers)")
    p.add_argument("--min-size", type=int, default=DEFAULT_MIN_SIZE,
                   help=f"smallest domain in residues (default {DEFAULT_MIN_SIZE})")
    p.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE,
                   help=f"largest domain in residues (default {DEFAULT_MAX_SIZE})")
    p.add_argument("--ncut-max", type=float, default=DEFAULT_NCUT_MAX,
                   help=f"structure route: split while normalised cut < this "
                        f"(default {DEFAULT_NCUT_MAX:g})")
    p.add_argument("--no-write-models", action="store_true",
                   help="write only domains.parquet, not the domain mmCIF files")


def split_model_file(path: Path, pae_dir: str | None = None, plddt_min: float | None = 70.0,
                     predicted: bool | None = None, **kw) -> tuple[list[Atoms], str]:
    """Load one model, find and read its PAE if ``pae_dir`` is given, and split it.

    Returns
    -------
    (list of Atoms, str)
        The domains and the PAE file used ("" if none).
    """
    atoms = load_model(path)
    pae_file = None
    if pae_dir:
        pae_file = find_pae_file(pae_dir, atoms.name, atoms.meta.get("accession"))
    pae = read_pae(pae_file) if pae_file else None
    doms = split_domains(atoms, pae=pae, plddt_min=plddt_min, predicted=predicted, **kw)
    return doms, str(pae_file or "")


def run_domains_command(args) -> int:
    """Handler of ``difffit-screen domains``: split models, write domains and the table.

    A model that cannot be read or split is a row of ``failures.parquet`` (and a line on
    stderr) and the rest go on; the exit status is 2 only when no model could be split. Domain
    files are named by :func:`~difffit_screen.outputs.safe_name` and written atomically; a
    reused ``--out`` first loses the domain files its previous ``domains.parquet`` lists (never
    an input) and that table.
    """
    from .outputs import atomic_write, prepare_output_dir, safe_name
    from .structures import write_structure
    from .tables import FAILURES_SCHEMA, table_from_rows, write_table

    if args.min_size > args.max_size:
        raise InputError(f"--min-size {args.min_size} is larger than --max-size {args.max_size}")
    out = prepare_output_dir(args.out)
    paths = expand_model_paths(args.models)
    if not paths:
        raise InputError("no structure files among the MODEL arguments")
    remove_previous_domains(out, paths)
    predicted = {"auto": None, "yes": True, "no": False}[args.predicted]
    plddt_min = args.plddt_min if args.plddt_min >= 0 else None
    rows, per_model, failures = [], [], []
    for path in paths:
        try:
            doms, pae_file = split_model_file(path, args.pae_dir, plddt_min, predicted,
                                              min_size=args.min_size, max_size=args.max_size,
                                              ncut_max=args.ncut_max)
        except Exception as exc:  # InputError or anything unexpected: a failure row
            reason = str(exc) if isinstance(exc, InputError) else \
                f"{path}: cannot split ({type(exc).__name__}: {exc})"
            log.debug("%s not split", path, exc_info=True)
            print(f"difffit-screen domains: skipped {path}: {reason}", file=sys.stderr)
            failures.append({"candidate": Path(path).name, "source": str(path),
                             "stage": "domains", "reason": reason})
            continue
        per_model.append(len(doms))
        for dom in doms:
            target = out / f"{safe_name(dom.name)}.cif"
            if not args.no_write_models:
                with atomic_write(target) as tmp:
                    write_structure(dom, tmp)
            rows.append(domain_row(dom, str(target) if not args.no_write_models else "",
                                   pae_file))
    write_domain_table(rows, out / "domains.parquet")
    write_table(table_from_rows(failures, FAILURES_SCHEMA), out / "failures.parquet")
    summary = summarize_domains(len(paths), per_model, [r["n_residues"] for r in rows],
                                len(failures))
    print(format_summary(summary))
    print(f"wrote {out / 'domains.parquet'}")
    return 0 if len(failures) < len(paths) else 2


def remove_previous_domains(out: Path, inputs: list[Path]) -> None:
    """Remove what a previous ``domains`` run wrote into ``out``: the domain files its
    ``domains.parquet`` lists (inside ``out``, never one of ``inputs``) and its tables."""
    table = out / "domains.parquet"
    if not table.is_file():
        return
    keep = {p.resolve() for p in inputs}
    try:
        import pyarrow.parquet as pq

        listed = [p for p in pq.read_table(table, columns=["path"]).column("path").to_pylist()
                  if p]
    except Exception:
        listed = []
    root = out.resolve()
    for p in listed:
        f = Path(p).resolve()
        if f.parent == root and f not in keep and f.suffix == ".cif" and f.is_file():
            f.unlink()
    for name in ("domains.parquet", "failures.parquet"):
        if (out / name).is_file() and (out / name).resolve() not in keep:
            (out / name).unlink()
