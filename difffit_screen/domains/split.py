"""Splitting one model into domain candidates: :func:`assign_domains` labels residues (PAE or
structure route, then clean-up), :func:`split_domains` trims, labels and cuts the model.

See the package docstring (:mod:`difffit_screen.domains`) for the steps and their defaults.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..structures import Atoms
from .bisection import (
    DEFAULT_COMPACT_MAX,
    DEFAULT_CONTACT_CUTOFF,
    DEFAULT_NCUT_MAX,
    bisect_recursively,
    contact_matrix,
)
from .cleanup import (
    absorb_short_segments,
    count_pieces,
    merge_small_domains,
    order_labels,
    split_large_domains,
)
from .pae_clusters import (
    DEFAULT_PAE_CUTOFF,
    DEFAULT_PAE_METHOD,
    DEFAULT_PAE_POWER,
    DEFAULT_PAE_RESOLUTION,
    cluster_pae,
    pae_graph_weights,
)
from .plddt import DEFAULT_PLDDT_MIN, low_confidence, plddt_applies
from .residues import Residues, compactness, format_residue_ranges, index_residues

__all__ = ["DEFAULT_MAX_SIZE", "DEFAULT_MIN_SEGMENT", "DEFAULT_MIN_SIZE", "assign_domains",
           "split_domains"]

DEFAULT_MIN_SIZE = 40
DEFAULT_MAX_SIZE = 600
DEFAULT_MIN_SEGMENT = 15


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
        :func:`~.pae.read_pae`); without it domains come from the structure alone.
    plddt_min : float or None
        pLDDT cut-off (default 70), the rule of :func:`~.plddt.trim_low_confidence` (whole
        residues by their mean pLDDT); ``None`` never trims.
    min_size, max_size : int
        Smallest and largest domain in residues (defaults 40 and 600).
    predicted : bool, optional
        Whether B-factors are pLDDT; ``None`` guesses (:func:`~.plddt.is_predicted_model`; a
        given PAE counts as evidence). Trimming is skipped for models that are not predicted,
        and for B-factors that cannot be pLDDT (:func:`~.plddt.looks_like_plddt`) whatever
        ``predicted`` says.
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
    pae = _checked_pae(atoms, pae, len(res_all))
    applied = _plddt_cutoff(atoms, plddt_min, predicted, pae is not None)
    kept_idx = np.arange(len(res_all)) if applied is None else \
        np.flatnonzero(~low_confidence(res_all, applied))
    sub_pae = pae[np.ix_(kept_idx, kept_idx)] if pae is not None else None
    labels = assign_domains(res_all.take(kept_idx), sub_pae, min_size=min_size,
                            max_size=max_size, **kw)
    n_dom = int(labels.max()) + 1 if (labels >= 0).any() else 0
    base = str(atoms.meta.get("accession") or atoms.name)
    meta = {"parent": atoms.name, "n_domains": n_dom, "method": _method_name(pae, kw),
            "plddt_min": applied}
    return [_domain(atoms, res_all, kept_idx, labels, d, f"{base}_D{d + 1}", meta)
            for d in range(n_dom)]


def _plddt_cutoff(atoms: Atoms, plddt_min: float | None, predicted: bool | None,
                  has_pae: bool) -> float | None:
    """The pLDDT cut-off to trim ``atoms`` at: ``plddt_min`` if its B-factors are pLDDT
    (:func:`~.plddt.plddt_applies`; unknown ``predicted`` counts as true given a PAE), else
    ``None``."""
    if predicted is None and has_pae:
        predicted = True
    if plddt_min is None or not plddt_applies(atoms, predicted):
        return None
    return float(plddt_min)


def _checked_pae(atoms: Atoms, pae: np.ndarray | None, n_res: int) -> np.ndarray | None:
    """``pae`` as an array, checked to be ``(n_res, n_res)``."""
    if pae is None:
        return None
    pae = np.asarray(pae)
    if pae.shape != (n_res, n_res):
        raise InputError(f"{atoms.name}: PAE matrix is {pae.shape[0]}x{pae.shape[1]} but the "
                         f"model has {n_res} polymer residues")
    return pae


def _method_name(pae: np.ndarray | None, kw: dict) -> str:
    """The ``method`` meta value: ``contacts``, ``pae:greedy`` or ``pae:louvain(seed=S)``."""
    if pae is None:
        return "contacts"
    pm = kw.get("pae_method", DEFAULT_PAE_METHOD)
    return f"pae:{pm}" + (f"(seed={kw.get('seed', 0)})" if pm == "louvain" else "")


def _domain(atoms: Atoms, res_all: Residues, kept_idx: np.ndarray, labels: np.ndarray, d: int,
            name: str, meta: dict) -> Atoms:
    """Domain ``d`` (label ``d`` of the kept residues ``kept_idx``) of ``atoms`` as Atoms."""
    members = kept_idx[labels == d]
    dom = atoms.subset(np.isin(res_all.atom_residue, members), name=name)
    dom.meta.update(
        parent=meta["parent"],
        residue_ranges=format_residue_ranges(res_all, members),
        domain_index=d + 1,
        n_domains=meta["n_domains"],
        n_residues=len(members),
        method=meta["method"],
        plddt_min=meta["plddt_min"],
        mean_plddt=float(res_all.plddt[members].mean()),
        compactness=compactness(res_all.xyz[members]),
        n_pieces=count_pieces(labels, d),
    )
    return dom
