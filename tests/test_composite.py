"""Compositing: clash measure, density zero-out, and a real haemoglobin composite (EMD-3488)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from difffit_screen.composite import (
    CompositeParams,
    chain_id,
    clash_fraction,
    parse_copies,
    robust_z,
    run_composite,
    zero_mask,
)
from difffit_screen.errors import InputError
from difffit_screen.fit import FitParams
from difffit_screen.maps import DensityMap

SHARED = Path(__file__).resolve().parents[2] / "shared"
HB = SHARED / "data" / "emd3488_haemoglobin"


def test_chain_ids():
    assert [chain_id(i) for i in (0, 1, 25, 26, 27, 51, 52)] == \
        ["A", "B", "Z", "AA", "AB", "AZ", "BA"]


def test_clash_fraction():
    g = np.arange(10) * 4.0  # points 4 Å apart: none within 3 Å of another
    a = np.stack(np.meshgrid(g, g, [0.0]), -1).reshape(-1, 3)
    assert clash_fraction(a, []) == (0.0, -1)
    far = a + 100.0
    assert clash_fraction(a, [far])[0] == 0.0
    frac, which = clash_fraction(a, [far, a + 0.5])
    assert frac == 1.0 and which == 1
    half = a.copy()
    half[50:] += 100.0  # only the first half overlaps
    assert clash_fraction(a, [half], distance=3.0)[0] == pytest.approx(0.5, abs=0.05)


def test_zero_out_removes_only_the_copy():
    shape = (40, 40, 40)
    vs = np.array([1.0, 1.0, 1.0])
    dmap = DensityMap(np.zeros(shape, np.float32), vs, np.zeros(3))
    rng = np.random.default_rng(1)
    copy1 = rng.normal([10, 10, 10], 2.0, (60, 3))
    copy2 = rng.normal([30, 30, 30], 2.0, (60, 3))
    z = np.full(60, 6.0)
    # "map" = both copies simulated; zero the first
    both = zero_mask(dmap, 4.0, [(copy1, z)], 0.05) * 1.0 + zero_mask(dmap, 4.0, [(copy2, z)],
                                                                       0.05) * 2.0
    dmap.data[:] = both
    mask = zero_mask(dmap, 4.0, [(copy1, z)], level=0.05)
    work = dmap.data.copy()
    work[mask] = 0.0
    near1 = (slice(5, 16),) * 3
    near2 = (slice(25, 36),) * 3
    assert work[near1].max() == 0.0  # footprint near the placed copy is gone
    assert np.array_equal(work[near2], dmap.data[near2])  # elsewhere unchanged
    assert dmap.data[near2].max() > 0


def test_robust_z_and_copies():
    z = robust_z(np.array([0.5, 0.01, 0.0, -0.01, 0.02, -0.02]))
    assert z[0] > 10 and abs(z[2]) < 2
    assert parse_copies(["a=2", "b = 3"]) == {"a": 2, "b": 3}
    with pytest.raises(InputError):
        parse_copies(["a"])


@pytest.mark.skipif(not HB.exists(), reason="shared data not available")
def test_haemoglobin_composite(tmp_path):
    gemmi = pytest.importorskip("gemmi")
    from scipy.spatial.transform import Rotation

    from difffit_screen.structures import read_structure

    st = gemmi.read_structure(str(HB / "5me2.pdb"))
    st.remove_ligands_and_waters()
    st.remove_hydrogens()
    rng = np.random.default_rng(3)
    files = {}
    for ch, name in (("A", "alpha"), ("B", "beta")):
        s = gemmi.Structure()
        m = gemmi.Model(1)
        m.add_chain(st[0][ch])
        s.add_model(m)
        rot = Rotation.random(random_state=rng).as_matrix()
        s[0].transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(rot.tolist()),
                                                   gemmi.Vec3(*rng.uniform(-40, 40, 3))))
        s.setup_entities()
        files[name] = tmp_path / f"{name}.pdb"
        s.write_pdb(str(files[name]))
    params = CompositeParams(fit=FitParams(positions=20, rotations=32, iterations=60,
                                           refine_top=6, refine_iterations=60, models=0),
                             copies={"alpha": 2, "beta": 2}, max_rounds=3)
    out = tmp_path / "out"
    res = run_composite(str(HB / "emd_3488.mrc"), [str(files["alpha"]), str(files["beta"])],
                        out, params, threshold=0.029, resolution=3.2)
    for f in ("assembly.cif", "assembly.json", "residual.mrc", "rounds.parquet", "fits.parquet",
              "ranking.parquet", "composite.cxc"):
        assert (out / f).exists(), f
    info = json.loads((out / "assembly.json").read_text())
    # small search on 2 cores: at least 3 of the 4 chains (all 4 in the benchmark)
    assert info["placed"]["alpha"] <= 2 and info["placed"]["beta"] <= 2
    assert len(res.placements) >= 3
    ref = read_structure(HB / "5me2.pdb")
    cents = {c: ref.xyz[ref.chain == c].mean(0) for c in "ABCD"}
    from difffit_screen.structures import apply_matrix

    kinds = {"alpha": "AC", "beta": "BD"}
    hit = set()
    for p in res.placements:
        atoms = read_structure(files[p.subunit])
        c = apply_matrix(atoms.xyz, p.matrix).mean(0)
        d = {k: float(np.linalg.norm(c - cents[k])) for k in kinds[p.subunit]}
        best = min(d, key=d.get)
        assert d[best] < 3.0, (p.subunit, d)
        hit.add(best)
    assert len(hit) == len(res.placements)  # each copy on a different deposited chain
