"""Per-residue view of a model: its polymer residues in file order, their ranges, compactness."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..structures import Atoms

__all__ = ["Residues", "compactness", "format_residue_ranges", "index_residues",
           "radius_of_gyration"]


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

    def take(self, idx: np.ndarray) -> Residues:
        """The residues ``idx`` (indices into these residues), no longer tied to atoms
        (``atom_residue`` is empty)."""
        return Residues(np.zeros(0, np.int64), self.xyz[idx], self.chain[idx],
                        self.res_seq[idx], self.ins_code[idx], self.plddt[idx])


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


def radius_of_gyration(xyz: np.ndarray) -> float:
    """Radius of gyration in Å of ``(R, 3)`` points."""
    return float(np.sqrt(((xyz - xyz.mean(0)) ** 2).sum(1).mean())) if len(xyz) else 0.0


def compactness(xyz: np.ndarray) -> float:
    """Radius of gyration of ``(R, 3)`` residue points over ``2.2 * R**0.38`` Å.

    About 1 for a compact globular domain, 2 or more for rods and extended chains.
    """
    return radius_of_gyration(xyz) / (2.2 * max(len(xyz), 1) ** 0.38)
