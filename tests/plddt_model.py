"""A small predicted model for the pLDDT trimming tests (domains and the library store).

125 residues on a 5 x 5 x 5 grid of 3.8 Å (consecutive residues adjacent, one compact domain),
two atoms each (CA, CB) with per-atom pLDDT as AlphaFold 3 writes it: 90, except

- residues 41-50: 40 (a low-confidence stretch inside the domain, in contact with it);
- residue 20: CA 90, CB 40 (mean 65: removed whole, CA included);
- residue 30: CA 60, CB 85 (mean 72.5: kept whole, CA included);

and, with ``ligand=True``, one non-polymer atom (chain L) of B-factor 5.
"""

from __future__ import annotations

import numpy as np

from difffit_screen.structures import Atoms

ALL_RESIDUES = set(range(1, 126))
LOW_RESIDUES = {20, *range(41, 51)}
KEPT_RESIDUES = ALL_RESIDUES - LOW_RESIDUES


def cube_model(name: str = "AF-T00001-F1-model_v4", ligand: bool = False, **meta) -> Atoms:
    """The model described above, named ``name``, with ``meta``."""
    grid = [(x if (y + z) % 2 == 0 else 4 - x, y if z % 2 == 0 else 4 - y, z)
            for z in range(5) for y in range(5) for x in range(5)]  # a serpentine path
    ca = 3.8 * np.array(grid, dtype=np.float64)
    b = np.full((125, 2), 90.0)
    b[40:50] = 40.0
    b[19] = (90.0, 40.0)
    b[29] = (60.0, 85.0)
    cols = {"xyz": np.stack([ca, ca + np.array([1.5, 0.0, 0.0])], 1).reshape(-1, 3).tolist(),
            "element": ["C"] * 250, "atom_name": ["CA", "CB"] * 125, "res_name": ["ALA"] * 250,
            "res_seq": np.repeat(np.arange(1, 126), 2).tolist(), "chain": ["A"] * 250,
            "ins_code": [""] * 250, "b_iso": b.ravel().tolist(), "polymer": [True] * 250}
    if ligand:
        for key, value in (("xyz", [9.0, 9.0, 9.0]), ("element", "FE"), ("atom_name", "FE"),
                           ("res_name", "FE"), ("res_seq", 1), ("chain", "L"), ("ins_code", ""),
                           ("b_iso", 5.0), ("polymer", False)):
            cols[key].append(value)
    dtypes = {"xyz": np.float32, "res_seq": np.int32, "b_iso": np.float32, "polymer": bool}
    return Atoms(name=name, source=f"{name}.cif", meta=dict(meta),
                 **{k: np.array(v, dtype=dtypes.get(k, str)) for k, v in cols.items()})


def polymer_residues(atoms: Atoms) -> dict[int, int]:
    """``{residue number: atom count}`` of the polymer atoms of ``atoms``."""
    numbers, counts = np.unique(atoms.res_seq[atoms.polymer], return_counts=True)
    return dict(zip(numbers.tolist(), counts.tolist(), strict=True))
