"""Structural checks of a candidate, applied on every read path (files, library shards).

:func:`check_atoms` refuses (``InputError``, naming the source and the reason) what cannot be
fitted or would rank as a silent wrong answer, and returns warnings for what is suspicious:

- per-atom arrays of different lengths (a library-store row cut short);
- non-finite coordinates (``nan``, ``inf``);
- fewer than :data:`MIN_ATOMS` atoms (a single atom, a few-atom fragment);
- a degenerate spread: radius of gyration below :data:`MIN_RADIUS_OF_GYRATION` Å (all atoms on
  one point, or on top of each other);
- a compressed file cut short (:func:`check_compressed`, read through Python's gzip, which
  detects truncation that gemmi would silently accept);
- a structure file cut short (:func:`check_last_line` before parsing, :func:`check_file_end`
  after). A file is refused only on evidence that the *file* was cut, never because its model
  is shorter than the sequence its header declares (a pLDDT-trimmed or domain-cut model):

  * a PDB file whose last line has no line break and is not a whole record: a cut record name
    (``ATO``, ``HETA``, ``EN``) or an ``ATOM``/``HETATM``/``ANISOU`` line cut before the end
    of its B-factor (column 66); any file that cannot be parsed and ends without a line break
    is reported as truncated;
  * a PDB file whose atom records are not followed by ``TER``/``END`` (or ``ENDMDL``,
    ``CONECT``, ``MASTER``) and whose last residue is incomplete (fewer atoms than the fullest
    residue of its type); a predicted model (AlphaFold and the like: every residue of the
    declared sequence is modelled) with no such record whose residues stop before the end of
    the sequence its header declares (SEQRES / ``_entity_poly_seq``);
  * an mmCIF predicted model whose atom rows end the file in an incomplete residue (predicted
    models have every atom of every residue).

  A PDB file that ends in its atom records in a complete residue is fitted with a warning (it
  may be truncated); so is an mmCIF predicted model whose atom rows end the file before its
  declared sequence does (trimmed, or cut at a residue boundary: the file cannot tell). A
  file that ends with ``TER``/``END`` (or whose atom rows are followed by another mmCIF
  category) is whole, whatever its header declares.
"""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from pathlib import Path

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

MIN_ATOMS = 10
"""Candidates with fewer atoms than this are refused (a residue or two cannot be placed)."""
MIN_RADIUS_OF_GYRATION = 2.0
"""Å. Candidates more compact than this are refused: a single residue has about 2-3 Å; all
atoms on one point (or a handful of overlapping atoms) have about 0."""
PER_ATOM_ARRAYS = ("xyz", "element", "atom_name", "res_name", "res_seq", "chain", "ins_code",
                   "b_iso", "polymer")
TAIL_BYTES = 8192
END_RECORDS = ("END", "ENDMDL", "TER", "CONECT", "MASTER")
ATOM_RECORDS = ("ATOM", "HETATM", "ANISOU", "SIGUIJ", "SIGATM")
PDB_RECORDS = frozenset((
    *END_RECORDS, *ATOM_RECORDS, "HEADER", "OBSLTE", "TITLE", "SPLIT", "CAVEAT", "COMPND",
    "SOURCE", "KEYWDS", "EXPDTA", "NUMMDL", "MDLTYP", "AUTHOR", "REVDAT", "SPRSDE", "JRNL",
    "REMARK", "DBREF", "DBREF1", "DBREF2", "SEQADV", "SEQRES", "MODRES", "HET", "HETNAM",
    "HETSYN", "FORMUL", "HELIX", "SHEET", "SSBOND", "LINK", "CISPEP", "SITE", "CRYST1",
    "ORIGX1", "ORIGX2", "ORIGX3", "SCALE1", "SCALE2", "SCALE3", "MTRIX1", "MTRIX2", "MTRIX3",
    "MODEL"))
"""The record names of the PDB format (columns 1-6)."""
ATOM_LINE_MIN = 66
"""Columns of a whole ``ATOM``/``HETATM`` record up to its B-factor (the pLDDT of a predicted
model), the last field every writer fills."""


def check_atoms(atoms, source: str | None = None, fittable: bool = True,
                min_atoms: int = MIN_ATOMS, min_rg: float = MIN_RADIUS_OF_GYRATION) -> None:
    """Refuse a corrupt candidate, or one that cannot be fitted; see the module docstring.

    Parameters
    ----------
    atoms : Atoms
        The candidate (:class:`~difffit_screen.structures.Atoms`).
    source : str, optional
        Named in the message (default ``atoms.source`` or ``atoms.name``).
    fittable : bool
        Also refuse too few atoms and a degenerate spread (the read paths check integrity
        only: arrays and finite coordinates; the fit checks everything).
    min_atoms, min_rg : optional
        The minimum number of atoms and radius of gyration (Å).

    Raises
    ------
    InputError
        Naming the source and the reason.
    """
    where = source or atoms.source or atoms.name
    n = len(atoms.element)
    xyz = np.asarray(atoms.xyz)
    if xyz.ndim != 2 or xyz.shape[1:] != (3,) or len(xyz) != n:
        raise InputError(f"{where}: corrupt candidate: {xyz.size} coordinate values for {n} "
                         f"atoms (expected {3 * n})")
    lengths = {name: len(getattr(atoms, name)) for name in PER_ATOM_ARRAYS}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} {v}" for k, v in lengths.items() if v != n)
        raise InputError(f"{where}: corrupt candidate: per-atom arrays of different lengths "
                         f"({n} atoms; {detail})")
    finite = np.isfinite(xyz).all(axis=1)
    if not finite.all():
        raise InputError(f"{where}: {int((~finite).sum())} of {n} atoms have non-finite "
                         f"coordinates (nan or inf)")
    if not fittable:
        return
    if n < min_atoms:
        raise InputError(f"{where}: too few atoms to fit ({n}; at least {min_atoms} needed)")
    xyz64 = xyz.astype(np.float64)
    rg = float(np.sqrt(((xyz64 - xyz64.mean(0)) ** 2).sum(1).mean()))
    if not rg >= min_rg:
        raise InputError(f"{where}: degenerate structure: radius of gyration {rg:.2g} Å is below "
                         f"{min_rg:g} Å (atoms on one point or on top of each other)")


def check_compressed(path: str | os.PathLike) -> None:
    """Read a ``.gz`` file to its end through Python's gzip; refuse it when cut short or corrupt.

    Raises
    ------
    InputError
        The compressed stream is truncated or corrupt (naming the file).
    """
    path = Path(path)
    if not path.name.lower().endswith(".gz"):
        return
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 22):
                pass
    except EOFError:
        raise InputError(f"{path}: compressed file is truncated (the gzip stream ends before "
                         f"its end marker): download it again") from None
    except (OSError, zlib.error) as exc:
        raise InputError(f"{path}: corrupt compressed file ({exc})") from None


def read_tail(path: str | os.PathLike, n_bytes: int = TAIL_BYTES) -> str:
    """The last ``n_bytes`` of a (possibly gzipped) text file, decoded leniently."""
    path = Path(path)
    if path.name.lower().endswith(".gz"):
        tail = b""
        with gzip.open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                tail = (tail + block)[-n_bytes:]
        return tail.decode("utf-8", "replace")
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - n_bytes))
        return fh.read().decode("utf-8", "replace")


def is_pdb_format(path: str | os.PathLike) -> bool:
    """Whether a structure file name says PDB format (``.pdb``, ``.ent``, ``.gz`` too)."""
    name = Path(path).name.lower().removesuffix(".gz")
    return name.endswith((".pdb", ".ent"))


def check_last_line(path: str | os.PathLike) -> None:
    """Refuse a PDB file that ends in a partial line (see the module docstring).

    Raises
    ------
    InputError
        The file's last line has no line break and is not a whole record (naming the file and
        the cut line).
    """
    path = Path(path)
    if not is_pdb_format(path):
        return
    tail = read_tail(path, 512)
    if not tail or tail.endswith(("\n", "\r")):
        return
    last = tail.splitlines()[-1]
    record = last[:6].strip().upper()
    cut = record not in PDB_RECORDS or (record in ATOM_RECORDS[:3]
                                        and len(last.rstrip()) < ATOM_LINE_MIN)
    if cut:
        raise InputError(f"{path}: truncated file: it ends in a partial line "
                         f"({last.strip()[:40]!r}, cut mid-record)")


def ends_without_line_break(path: str | os.PathLike) -> bool:
    """Whether a (possibly gzipped) text file's last byte is not a line break."""
    try:
        tail = read_tail(path, 16)
    except (OSError, EOFError, zlib.error):
        return False
    return bool(tail) and not tail.endswith(("\n", "\r"))


def check_file_end(path: str | os.PathLike, atoms, structure=None) -> list[str]:
    """Detect a structure file cut at a line boundary; see the module docstring.

    Returns
    -------
    list of str
        Warnings (the file may be truncated).

    Raises
    ------
    InputError
        The file is certainly incomplete.
    """
    path = Path(path)
    warnings: list[str] = []
    pdb = is_pdb_format(path)
    lines = [ln for ln in read_tail(path).splitlines() if ln.strip()]
    last = (lines[-1][:6].strip() if pdb else lines[-1].split()[0]).upper() if lines else ""
    if last not in ATOM_RECORDS:  # ends with a record that follows the atoms: complete
        return warnings
    predicted = atoms.polymer.any() and _is_predicted(path, atoms)
    if (pdb or predicted) and last_residue_incomplete(atoms):
        raise InputError(f"{path}: truncated file: it ends inside residue {_last_residue(atoms)} "
                         f"with no {'TER/END record' if pdb else 'other record after it'}")
    declared = declared_length(structure) if structure is not None else None
    modelled = int(np.max(atoms.res_seq[atoms.polymer])) if atoms.polymer.any() else 0
    if declared and predicted and modelled < declared:
        if pdb:
            raise InputError(f"{path}: incomplete predicted model: the file ends after residue "
                             f"{modelled} of the {declared} its header declares, with no "
                             f"TER/END record (truncated?)")
        warnings.append(f"{path}: predicted model ends after residue {modelled} of the "
                        f"{declared} its header declares: trimmed, or cut at a residue "
                        f"boundary")
    if pdb:
        warnings.append(f"{path}: no TER/END record after the last atom: the file may be "
                        f"truncated")
    return warnings


def _last_residue(atoms) -> str:
    return f"{atoms.res_name[-1]} {atoms.chain[-1]}{atoms.res_seq[-1]}"


def last_residue_incomplete(atoms) -> bool:
    """Whether the last residue has fewer atoms than the fullest residue of the same type."""
    if len(atoms) == 0 or not atoms.polymer[-1]:
        return False
    keys = list(zip(atoms.chain.tolist(), atoms.res_seq.tolist(), atoms.ins_code.tolist(),
                    strict=True))
    last = keys[-1]
    n_last = sum(1 for k in keys if k == last)
    name = atoms.res_name[-1]
    counts: dict[tuple, int] = {}
    for k, rn in zip(keys, atoms.res_name.tolist(), strict=True):
        if rn == name and k != last:
            counts[k] = counts.get(k, 0) + 1
    if counts:
        return n_last < max(counts.values())
    return bool(atoms.polymer[-1]) and n_last < 4  # no other residue of its type: backbone


def declared_length(structure) -> int | None:
    """Length of the longest polymer sequence a gemmi structure's header declares, if any."""
    try:
        lengths = [len(e.full_sequence) for e in structure.entities if e.full_sequence]
    except Exception:
        return None
    return max(lengths) if lengths else None


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


def _is_predicted(path: Path, atoms) -> bool:
    if atoms.meta.get("predicted"):
        return True
    try:
        return sniff_predicted(path)
    except Exception:
        return False
