"""pLDDT: whether a model's B-factors are pLDDT, and the package's one pLDDT trimming.

Both routes that trim use this module: domain splitting (:func:`~.split.split_domains`, the
``domains`` command) and the library store (``pack --plddt-min``, full models and domains, see
:func:`difffit_screen.store.make_prepare`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..structures import Atoms
from .residues import Residues, index_residues

__all__ = ["CONFIDENT_PLDDT", "DEFAULT_PLDDT_MIN", "PREDICTED_MARKERS", "confident_fraction",
           "is_predicted_model", "looks_like_plddt",
           "low_confidence", "low_confidence_residues", "plddt_applies", "trim_if_predicted",
           "trim_low_confidence"]

log = logging.getLogger(__name__)

DEFAULT_PLDDT_MIN = 70.0
PREDICTED_MARKERS = ("alphafold", "afdb", "colabfold", "esmfold", "predicted", "af-")
CONFIDENT_PLDDT = 50.0
"""pLDDT below this is AlphaFold's "very low" band: predicted disorder, not a structure."""


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


def plddt_applies(atoms: Atoms, predicted: bool | None = None) -> bool:
    """Whether the B-factors of ``atoms`` are pLDDT, so that trimming by them makes sense.

    Parameters
    ----------
    predicted : bool, optional
        What the caller knows (``None``: guess with :func:`is_predicted_model`). A model said to
        be predicted whose B-factors cannot be pLDDT (:func:`looks_like_plddt`) is not trimmed,
        with a warning.
    """
    if predicted is None:
        return is_predicted_model(atoms)
    if predicted and not looks_like_plddt(atoms):
        log.warning("%s: B-factors are outside 0-100 or all equal, so not pLDDT; not trimming",
                    atoms.name)
        return False
    return bool(predicted)


def confident_fraction(atoms: Atoms, predicted: bool | None = None,
                       level: float = CONFIDENT_PLDDT) -> float | None:
    """Fraction of the polymer residues of a predicted model with pLDDT at or above ``level``.

    ``None`` when the B-factors are not pLDDT (:func:`plddt_applies`, ``predicted`` as there):
    an experimental structure has no such fraction. The significance never gives a small
    p-value to a model whose fraction is below ``significance.MIN_CONFIDENT``.
    """
    if not plddt_applies(atoms, predicted):
        return None
    res = index_residues(atoms)
    return float(1.0 - low_confidence(res, level).mean()) if len(res.plddt) else None


def low_confidence(res: Residues, plddt_min: float) -> np.ndarray:
    """``(R,)`` bool: the residues of ``res`` whose mean pLDDT is below ``plddt_min``."""
    return res.plddt < float(plddt_min)


def low_confidence_residues(atoms: Atoms, plddt_min: float) -> np.ndarray:
    """Return a ``(R,)`` bool mask of the polymer residues with mean pLDDT below ``plddt_min``."""
    return low_confidence(index_residues(atoms), plddt_min)


def trim_low_confidence(atoms: Atoms, plddt_min: float = DEFAULT_PLDDT_MIN) -> Atoms:
    """Remove whole residues whose pLDDT (B-factor) is below ``plddt_min``.

    The caller decides whether the B-factors are pLDDT (see :func:`plddt_applies`, or
    :func:`trim_if_predicted`, which does both). The rule, the same for domain splitting and the
    library store:

    - **By residue.** A residue's pLDDT is the mean B-factor of its atoms and the residue is kept
      or removed whole. pLDDT is a per-residue confidence: AlphaFold 2, AlphaFold DB, ColabFold
      and ESMFold write one value for all atoms of a residue (so by atom or by residue is the
      same there), and where a predictor writes one per atom (AlphaFold 3) trimming by atom
      would leave broken residues: a backbone without its side chain, a side-chain tip
      without its backbone.
    - **Polymer residues only.** Non-polymer atoms (ligands, ions, glycans) are kept. The
      structure readers drop ligands and waters unless asked for them
      (:func:`~difffit_screen.structures.read_structure`), so they are here only by the caller's
      choice, and only in AlphaFold 3-style models is their B-factor column pLDDT: ligands
      added to a predicted model by other tools (transplanted or docked) carry other numbers,
      and waters are never predicted.
    - **Predicted models only** (the caller's decision): B-factors of experimental structures
      (PDB entries, their hetero atoms included) are never read as pLDDT.

    ``meta["plddt_min"]`` and ``meta["n_trimmed_residues"]`` record what was done.

    Returns
    -------
    Atoms
        The kept atoms (possibly none).
    """
    res = index_residues(atoms)
    low = low_confidence(res, plddt_min)
    keep = (res.atom_residue < 0) | ~low[np.maximum(res.atom_residue, 0)]
    out = atoms.subset(keep)
    out.meta["plddt_min"] = float(plddt_min)
    out.meta["n_trimmed_residues"] = int(low.sum())
    return out


def trim_if_predicted(atoms: Atoms, plddt_min: float | None = DEFAULT_PLDDT_MIN,
                      predicted: bool | None = None) -> Atoms:
    """:func:`trim_low_confidence` if ``plddt_min`` is given and the B-factors are pLDDT
    (:func:`plddt_applies` with ``predicted``), else ``atoms`` unchanged."""
    if plddt_min is None or not plddt_applies(atoms, predicted):
        return atoms
    return trim_low_confidence(atoms, plddt_min)
