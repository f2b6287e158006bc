"""Atomic structures: reading PDB/mmCIF with gemmi, atom selection, simulated per-atom weights,
and writing posed models.

A structure is held as :class:`Atoms`, flat per-atom numpy arrays (coordinates ``[x, y, z]`` in Å,
shape ``(N, 3)``), so that the library store can pack it into Arrow columns and the fitting code
never touches PDB/mmCIF text.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import gemmi
import numpy as np

from .errors import InputError
from .validate import (
    check_atoms,
    check_compressed,
    check_file_end,
    check_last_line,
    ends_without_line_break,
)

ATOM_SETS = ("all", "backbone", "ca")
STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pdb.gz", ".ent.gz", ".cif.gz",
                      ".mmcif.gz")
PROTEIN_BACKBONE = {"N", "CA", "C", "O"}
NUCLEIC_BACKBONE = {"P", "OP1", "OP2", "O5'", "C5'", "C4'", "C3'", "O3'"}
WATER_NAMES = {"HOH", "WAT", "H2O", "DOD", "SOL"}


@dataclass
class Atoms:
    """Per-atom arrays of one candidate structure (first model only).

    Attributes
    ----------
    name : str
        Candidate id (by default the file stem without structure suffixes).
    xyz : np.ndarray
        ``(N, 3)`` float32 coordinates ``[x, y, z]`` in Å, in the candidate's input frame.
    element : np.ndarray
        ``(N,)`` element symbols, upper case (``"C"``, ``"FE"``).
    atom_name, res_name, chain, ins_code : np.ndarray
        ``(N,)`` strings.
    res_seq : np.ndarray
        ``(N,)`` int32 residue numbers.
    b_iso : np.ndarray
        ``(N,)`` float32 B-factors (pLDDT for AlphaFold models).
    polymer : np.ndarray
        ``(N,)`` bool, True for atoms of amino-acid or nucleotide residues.
    source : str
        Where the atoms came from (a path or a store reference).
    meta : dict
        Free-form provenance (accession, version, parent, residue ranges ...).
    """

    name: str
    xyz: np.ndarray
    element: np.ndarray
    atom_name: np.ndarray
    res_name: np.ndarray
    res_seq: np.ndarray
    chain: np.ndarray
    ins_code: np.ndarray
    b_iso: np.ndarray
    polymer: np.ndarray
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    def subset(self, mask: np.ndarray, name: str | None = None) -> Atoms:
        """Return the atoms where ``mask`` (``(N,)`` bool or integer indices) selects."""
        return Atoms(
            name=name or self.name,
            xyz=self.xyz[mask],
            element=self.element[mask],
            atom_name=self.atom_name[mask],
            res_name=self.res_name[mask],
            res_seq=self.res_seq[mask],
            chain=self.chain[mask],
            ins_code=self.ins_code[mask],
            b_iso=self.b_iso[mask],
            polymer=self.polymer[mask],
            source=self.source,
            meta=dict(self.meta),
        )



RANGE_TEXT = re.compile(r"^(?:([^:]+):)?(-?\d+)-(-?\d+)$")
"""One residue range: ``[CHAIN:]FIRST-LAST`` (residue numbers may be negative)."""


def parse_residue_ranges(text: str) -> list[tuple[str | None, int, int]]:
    """Parse ``"A:1-133,A:409-523"`` into ``[("A", 1, 133), ("A", 409, 523)]``.

    The chain is optional (``"1-133"`` gives ``(None, 1, 133)``: every chain); blanks around
    the commas are ignored. The one parser of the ``residue_ranges`` column (domains, report).

    Raises
    ------
    InputError
        A part that is not ``[CHAIN:]FIRST-LAST``.
    """
    ranges = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = RANGE_TEXT.match(part)
        if m is None:
            raise InputError(f"residue ranges {text!r}: {part!r} is not [CHAIN:]FIRST-LAST")
        ranges.append((m.group(1), int(m.group(2)), int(m.group(3))))
    return ranges


def select_residue_ranges(atoms: Atoms, text: str) -> Atoms:
    """Return the atoms of ``atoms`` within the residue ranges ``text`` (see
    :func:`parse_residue_ranges`)."""
    mask = np.zeros(len(atoms), bool)
    for chain, first, last in parse_residue_ranges(text):
        sel = (atoms.res_seq >= first) & (atoms.res_seq <= last)
        if chain is not None:
            sel &= atoms.chain == chain
        mask |= sel
    return atoms.subset(mask)

def candidate_name(path: str | os.PathLike) -> str:
    """Return the candidate id of a structure file: its name without structure suffixes."""
    name = Path(path).name
    for suffix in sorted(STRUCTURE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def is_structure_file(path: str | os.PathLike) -> bool:
    """True if ``path`` has a PDB/mmCIF suffix (optionally gzipped)."""
    return str(path).lower().endswith(STRUCTURE_SUFFIXES)


def read_structure(
    path: str | os.PathLike,
    name: str | None = None,
    keep_hydrogens: bool = False,
    keep_waters: bool = False,
    keep_ligands: bool = False,
) -> Atoms:
    """Read the first model of a PDB or mmCIF file (optionally ``.gz``) into :class:`Atoms`.

    Hydrogens, waters and ligands (non-polymer residues) are dropped unless asked for. Alternate
    locations keep the first conformer.

    Raises
    ------
    InputError
        If the file is missing, unparsable, truncated, or holds no usable atoms after filtering
        (see :mod:`difffit_screen.validate`); suspicious files get ``meta["warnings"]``.
    """
    atoms, _ = read_structure_annotated(path, name, keep_hydrogens, keep_waters, keep_ligands)
    return atoms


def read_structure_annotated(
    path: str | os.PathLike,
    name: str | None = None,
    keep_hydrogens: bool = False,
    keep_waters: bool = False,
    keep_ligands: bool = False,
) -> tuple[Atoms, dict[str, dict]]:
    """:func:`read_structure`, also returning the header's per-chain annotations.

    The file is parsed once (mmCIF: one ``gemmi.cif`` document for the atoms and the header).
    ``atoms.meta`` gets the file's default annotation (``name``, ``gene``, ``organism``,
    ``taxid``, ``uniprot``, ``title``, ``predicted``; see
    :func:`difffit_screen.annotations.read_header_annotations`); the returned dict maps chain
    names to theirs. A header that cannot be read leaves the meta empty (the atoms still count).
    """
    from .annotations import chain_annotation, is_mmcif_path, read_header_annotations

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: structure file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: structure file is empty")
    check_compressed(path)  # gemmi reads a truncated .gz silently as a fragment
    check_last_line(path)  # a PDB file cut mid-record: gemmi may read it as a fragment
    block = None
    try:
        if is_mmcif_path(path):
            doc = gemmi.cif.read(str(path))
            block = doc.sole_block() if len(doc) == 1 else doc[0]
            st = gemmi.make_structure_from_block(block)
            st.merge_chain_parts()
        else:
            st = gemmi.read_structure(str(path), merge_chain_parts=True)
    except Exception as exc:  # gemmi raises RuntimeError/ValueError/OSError subclasses
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if ends_without_line_break(path):
            raise InputError(f"{path}: truncated file: it ends in a partial line and cannot be "
                             f"parsed ({msg})") from None
        raise InputError(f"{path}: cannot parse structure ({msg})") from None
    atoms = atoms_from_gemmi(st, name or candidate_name(path), str(path), keep_hydrogens,
                             keep_waters, keep_ligands)
    if len(atoms) == 0:
        raise InputError(f"{path}: no atoms (after removing hydrogens, waters and ligands)")
    check_atoms(atoms, str(path), fittable=False)  # non-finite coordinates: InputError
    warnings = check_file_end(path, atoms, st)  # cut at a line boundary: InputError or warnings
    if warnings:
        atoms.meta["warnings"] = warnings
    try:
        annotations = read_header_annotations(path, block)
    except Exception:  # a header we cannot read must not lose the candidate
        annotations = {}
    atoms.meta.update(chain_annotation(annotations))
    return atoms, annotations


def atoms_from_gemmi(
    st: gemmi.Structure,
    name: str,
    source: str = "",
    keep_hydrogens: bool = False,
    keep_waters: bool = False,
    keep_ligands: bool = False,
) -> Atoms:
    """Convert the first model of a gemmi structure into :class:`Atoms`."""
    if len(st) == 0:
        return _empty_atoms(name, source)
    st.setup_entities()
    model = st[0]
    xyz: list[list[float]] = []
    element: list[str] = []
    atom_name: list[str] = []
    b_iso: list[float] = []
    residues: list[tuple] = []  # (name, number, chain, insertion code, polymer, atoms kept)
    for chain in model:
        chain_name = chain.name
        for res in chain:
            res_name = res.name
            info = gemmi.find_tabulated_residue(res_name)
            is_polymer = bool(info is not None and (info.is_amino_acid() or info.is_nucleic_acid()))
            is_water = res_name in WATER_NAMES or (info is not None and info.is_water())
            if is_water and not keep_waters:
                continue
            if not is_polymer and not is_water and not keep_ligands:
                continue
            seen: set[str] = set()
            first = len(xyz)
            for atom in res:
                a_name = atom.name
                if a_name in seen:  # alternate conformers: keep the first
                    continue
                seen.add(a_name)
                el = atom.element
                if not keep_hydrogens and el.is_hydrogen:
                    continue
                xyz.append(atom.pos.tolist())
                element.append(el.name)
                atom_name.append(a_name)
                b_iso.append(atom.b_iso)
            if len(xyz) > first:
                seqid = res.seqid
                residues.append((res_name, seqid.num, chain_name, seqid.icode.strip(),
                                 is_polymer, len(xyz) - first))
    if not xyz:
        return _empty_atoms(name, source)
    res_cols = list(zip(*residues, strict=True))
    counts = np.array(res_cols[5], dtype=np.int64)

    def per_atom(values, dtype):  # one value a residue, repeated for its atoms
        return np.repeat(np.array(values, dtype=dtype), counts)

    return Atoms(
        name=name,
        xyz=np.array(xyz, dtype=np.float64).astype(np.float32),
        element=np.char.upper(np.array(element, dtype=str)),
        atom_name=np.array(atom_name, dtype=str),
        res_name=per_atom(res_cols[0], str),
        res_seq=per_atom(res_cols[1], np.int32),
        chain=per_atom(res_cols[2], str),
        ins_code=per_atom(res_cols[3], str),
        b_iso=np.array(b_iso, dtype=np.float32),
        polymer=per_atom(res_cols[4], bool),
        source=source,
    )


def _empty_atoms(name: str, source: str) -> Atoms:
    s = np.array([], dtype=str)
    return Atoms(name, np.zeros((0, 3), np.float32), s, s, s, np.zeros(0, np.int32), s, s,
                 np.zeros(0, np.float32), np.zeros(0, bool), source)


def select_atoms(atoms: Atoms, atom_set: str = "all") -> np.ndarray:
    """Return a ``(N,)`` bool mask of the atoms in ``atom_set``.

    ``all`` is every atom kept at reading; ``backbone`` is N, CA, C, O of amino acids and the
    sugar-phosphate backbone of nucleotides (selected by residue type, so waters and ions named
    "O" or "CA" are never taken); ``ca`` is CA of amino acids and P of nucleotides.
    """
    if atom_set not in ATOM_SETS:
        raise InputError(f"atom set {atom_set!r} is not one of {', '.join(ATOM_SETS)}")
    if atom_set == "all":
        return np.ones(len(atoms), dtype=bool)
    names = atoms.atom_name
    if atom_set == "backbone":
        wanted = PROTEIN_BACKBONE | NUCLEIC_BACKBONE
    else:
        wanted = {"CA", "P"}
    return atoms.polymer & np.isin(names, list(wanted))


def atomic_numbers(elements: np.ndarray) -> np.ndarray:
    """Return ``(N,)`` float32 atomic numbers for element symbols (unknown symbols count as 6)."""
    symbols, index = np.unique(np.asarray(elements, dtype=str), return_inverse=True)
    table = np.array([float(gemmi.Element(str(el)).atomic_number) or 6.0 for el in symbols],
                     dtype=np.float32)
    return table[index.reshape(-1)]


def simulate_atom_weights(xyz: np.ndarray, elements: np.ndarray, resolution: float) -> np.ndarray:
    """Per-atom weights ``W`` from a simulated map of the structure at ``resolution`` (Å).

    The simulated map is a sum of isotropic Gaussians at the atoms, amplitude proportional to the
    atomic number and ``sigma = 0.225 * resolution`` (ChimeraX ``molmap``), cut off at 5 sigma;
    ``W_i`` is that map evaluated at atom ``i`` and scaled so that ``max(W) = 1``.

    Parameters
    ----------
    xyz : np.ndarray
        ``(N, 3)`` coordinates in Å.
    elements : np.ndarray
        ``(N,)`` element symbols.
    resolution : float
        Resolution in Å.

    Returns
    -------
    np.ndarray
        ``(N,)`` float32 weights in ``(0, 1]``.
    """
    if len(xyz) == 0:
        return np.zeros(0, dtype=np.float32)
    sigma = 0.225 * float(resolution)
    z = atomic_numbers(elements).astype(np.float64)
    xyz = np.asarray(xyz, dtype=np.float64)
    if sigma > 1.2:  # many neighbours within 5 sigma: a grid is cheaper than neighbour pairs
        w = _gaussian_sum_on_grid(xyz, z, sigma)
    else:
        from scipy.spatial import cKDTree  # imported here: reading structures needs no scipy

        tree = cKDTree(xyz)
        pairs = tree.sparse_distance_matrix(tree, 5.0 * sigma, output_type="coo_matrix")
        contrib = z[pairs.col] * np.exp(-(pairs.data**2) / (2.0 * sigma**2))
        w = np.bincount(pairs.row, weights=contrib, minlength=len(xyz))
        w += z * (1.0 - np.bincount(pairs.row, minlength=len(xyz)).clip(max=1))  # self if absent
    return (w / w.max()).astype(np.float32)


def _gaussian_sum_on_grid(xyz: np.ndarray, z: np.ndarray, sigma: float) -> np.ndarray:
    """``sum_j z_j exp(-|x_i - x_j|^2 / 2 sigma^2)`` at every atom, via a grid (spacing sigma/3).

    Atoms are splatted trilinearly, the grid is convolved with the Gaussian (scaled so that a
    point source gives ``z`` at its centre) and sampled back trilinearly: about 1 % of the exact
    sum for sigma above 1 Å, in memory linear in the molecule's volume.
    """
    from scipy import ndimage

    from .kernels import splat_trilinear

    h = sigma / 3.0
    lo = xyz.min(0) - 4.0 * sigma
    f = (xyz - lo) / h
    shape = tuple(np.ceil(f.max(0)).astype(int) + int(np.ceil(4 * sigma / h)) + 2)
    grid = splat_trilinear(f, z, shape)
    grid = ndimage.gaussian_filter(grid, sigma / h, mode="constant", truncate=4.0)
    grid *= (2.0 * np.pi) ** 1.5 * (sigma / h) ** 3  # unit peak per unit amplitude
    return ndimage.map_coordinates(grid, f.T, order=1, mode="nearest", prefilter=False)


def apply_matrix(xyz: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a pose ``matrix`` (``(3, 4)`` or 12 floats, row-major ``[R | t]``) to xyz."""
    m = np.asarray(matrix, dtype=np.float64).reshape(3, 4)
    return (np.asarray(xyz, dtype=np.float64) @ m[:, :3].T + m[:, 3]).astype(np.float32)


def to_gemmi(atoms: Atoms, xyz: np.ndarray | None = None, chain_name: str | None = None,
             model: gemmi.Model | None = None) -> gemmi.Structure | gemmi.Model:
    """Build gemmi chains for ``atoms`` (optionally with replaced coordinates ``xyz``).

    If ``model`` is given the chains are appended to it and it is returned; otherwise a new
    one-model :class:`gemmi.Structure` is returned.
    """
    coords = atoms.xyz if xyz is None else np.asarray(xyz)
    own = model is None
    if own:
        st = gemmi.Structure()
        st.name = atoms.name
        model = gemmi.Model(1) if hasattr(gemmi.Model, "__init__") else gemmi.Model("1")
    chains: dict[str, gemmi.Chain] = {}
    order: list[str] = []
    last_key = None
    residue = None
    for i in range(len(atoms)):
        ch = chain_name or str(atoms.chain[i]) or "A"
        key = (ch, int(atoms.res_seq[i]), str(atoms.ins_code[i]), str(atoms.res_name[i]))
        if key != last_key:
            if residue is not None:
                chains[last_key[0]].add_residue(residue)
            residue = gemmi.Residue()
            residue.name = key[3]
            residue.seqid = gemmi.SeqId(key[1], key[2] or " ")
            residue.het_flag = "A" if atoms.polymer[i] else "H"
            if ch not in chains:
                chains[ch] = gemmi.Chain(ch)
                order.append(ch)
            last_key = key
        atom = gemmi.Atom()
        atom.name = str(atoms.atom_name[i])
        atom.element = gemmi.Element(str(atoms.element[i]))
        atom.pos = gemmi.Position(*map(float, coords[i]))
        atom.b_iso = float(atoms.b_iso[i])
        atom.occ = 1.0
        residue.add_atom(atom)
    if residue is not None:
        chains[last_key[0]].add_residue(residue)
    for ch in order:
        model.add_chain(chains[ch])
    if not own:
        return model
    st.add_model(model)
    st.setup_entities()
    return st


def write_structure(atoms: Atoms, path: str | os.PathLike,
                    matrix: np.ndarray | None = None) -> Path:
    """Write ``atoms`` (posed by ``matrix`` if given) as mmCIF (``.cif``) or PDB (``.pdb``)."""
    path = Path(path)
    xyz = atoms.xyz if matrix is None else apply_matrix(atoms.xyz, matrix)
    st = to_gemmi(atoms, xyz)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".pdb":
        st.write_pdb(str(path))
    else:
        doc = st.make_mmcif_document()
        write_annotation_header(doc.sole_block(), atoms)
        doc.write_file(str(path))
    return path


def write_annotation_header(block: gemmi.cif.Block, atoms: Atoms) -> None:
    """Name the candidate in an mmCIF block: ``_struct.title``, ``_entity.pdbx_description``,
    ``_entity_src_nat`` (organism, taxon) and ``_struct_ref`` (UniProt), from ``atoms.meta``.

    The title reads ``<candidate>: <name> (<organism>), residues <ranges> of <parent>``;
    categories whose values are unknown are left out.
    """
    from .annotations import meta_annotation

    meta = atoms.meta or {}
    ann = meta_annotation(meta)
    title = atoms.name + (f": {ann['name']}" if ann["name"] else "")
    if ann["organism"]:
        title += f" ({ann['organism']})"
    if meta.get("residue_ranges"):
        title += f", residues {meta['residue_ranges']}"
        if meta.get("parent"):
            title += f" of {meta['parent']}"
    block.set_pair("_struct.title", gemmi.cif.quote(title))
    entities = block.find_mmcif_category("_entity.")
    if len(entities) == 0:
        return
    tags = [t.split(".", 1)[1] for t in entities.tags]
    rows = [[row.str(i) for i in range(len(tags))] for row in entities]
    ids = [r[tags.index("id")] for r in rows]
    polymer = [r[tags.index("id")] for r in rows
               if "type" not in tags or r[tags.index("type")] == "polymer"]
    columns = {t: [r[i] for r in rows] for i, t in enumerate(tags)}
    columns["pdbx_description"] = [ann["name"] if (i in polymer and ann["name"]) else None
                                   for i in ids]
    block.set_mmcif_category("_entity.", columns)
    if ann["organism"] or ann["taxid"]:
        block.set_mmcif_category("_entity_src_nat.", {
            "entity_id": polymer,
            "pdbx_organism_scientific": [ann["organism"]] * len(polymer),
            "pdbx_ncbi_taxonomy_id": [None if ann["taxid"] is None else str(ann["taxid"])]
            * len(polymer)})
    uniprot = meta.get("uniprot") or (meta.get("accession") if meta.get("source_kind") == "afdb"
                                      else None)
    if uniprot:
        block.set_mmcif_category("_struct_ref.", {
            "id": [str(k) for k in range(1, len(polymer) + 1)], "entity_id": polymer,
            "db_name": ["UNP"] * len(polymer), "pdbx_db_accession": [uniprot] * len(polymer)})
