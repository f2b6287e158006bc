"""Compositing: clash measure, density zero-out, and a real haemoglobin composite (EMD-3488)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from difffit_screen.composite import (
    chain_id,
    clash_fraction,
    parse_copies,
    robust_z,
    split_scores,
    zero_mask,
)
from difffit_screen.errors import InputError
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


def test_split_scores_many_true_copies():
    # 11 true copies (scores near 0.002) above a bulk of poor clusters near -0.1: the gap split
    # puts all 11 in the top group, with a large z against the bulk
    rng = np.random.default_rng(0)
    true = 0.002 + rng.normal(0, 0.0005, 11)
    bulk = -0.1 + rng.normal(0, 0.01, 13)
    z, top, med = split_scores(np.concatenate([true, bulk]))
    assert top[:11].all() and not top[11:].any()
    assert z[:11].min() > 5 and abs(med + 0.1) < 0.02
    z2, top2, _ = split_scores(np.array([0.3, 0.1]))
    assert np.isinf(z2).all() and top2.all()


def write_moved_globins(folder: Path) -> dict[str, Path]:
    """5ME2 chains A (``alpha.pdb``) and B (``beta.pdb``), each moved to a random pose."""
    import gemmi
    from scipy.spatial.transform import Rotation

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
        files[name] = folder / f"{name}.pdb"
        s.write_pdb(str(files[name]))
    return files


@pytest.mark.skipif(not HB.exists(), reason="shared data not available")
def test_haemoglobin_composite(tmp_path):
    """EMD-3488 at the MANIFEST threshold 0.0863: alpha and beta of 5ME2 from random starts.

    No copy counts are given: all 4 chains must be placed by the acceptance rule alone, each
    within 3 Å (CA RMSD) of a different deposited chain of its kind, with no clash. The search
    is small (fixed seed) so that it runs in ~10-20 s CPU on 2 cores.
    """
    from difffit_screen.cli import main
    from difffit_screen.structures import apply_matrix, read_structure

    gemmi = pytest.importorskip("gemmi")
    files = write_moved_globins(tmp_path)
    out = tmp_path / "out"
    rc = main(["composite", "--map", str(HB / "emd_3488.mrc"), "--threshold", "0.0863",
               "--resolution", "3.2", "--out", str(out), "--positions", "40", "--rotations", "32",
               "--iterations", "60", "--clusters", "8", "--refine-iterations", "40",
               "--max-rounds", "4", "--seed", "0", str(files["alpha"]), str(files["beta"])])
    assert rc == 0
    for f in ("assembly.cif", "assembly.json", "residual.mrc", "rounds.parquet", "fits.parquet",
              "ranking.parquet", "composite.cxc", "report/index.html", "report/top_hits.cxc"):
        assert (out / f).exists(), f
    info = json.loads((out / "assembly.json").read_text())
    assert info["placed"] == {"alpha": 2, "beta": 2}, info["placed"]
    asm = gemmi.read_structure(str(out / "assembly.cif"))
    assert len(asm[0]) == 4
    ref = read_structure(HB / "5me2.pdb")
    kinds = {"alpha": "AC", "beta": "BD"}
    hit = set()
    cas = []
    for p in info["chains"]:
        atoms = read_structure(files[p["subunit"]])
        posed = apply_matrix(atoms.xyz, p["matrix"])
        pa = {int(atoms.res_seq[i]): posed[i] for i in range(len(atoms))
              if atoms.atom_name[i] == "CA"}
        cas.append(np.array(list(pa.values())))
        rmsd = {}
        for c in kinds[p["subunit"]]:
            qa = {int(ref.res_seq[i]): ref.xyz[i] for i in range(len(ref))
                  if ref.atom_name[i] == "CA" and ref.chain[i] == c}
            keys = sorted(set(pa) & set(qa))
            d = np.array([pa[k] for k in keys]) - np.array([qa[k] for k in keys])
            rmsd[c] = float(np.sqrt((d ** 2).sum(1).mean()))
        best = min(rmsd, key=rmsd.get)
        assert rmsd[best] < 3.0, (p["subunit"], rmsd)
        hit.add(best)
    assert hit == set("ABCD")  # each copy on a different deposited chain
    for i in range(len(cas)):
        assert clash_fraction(cas[i], cas[:i] + cas[i + 1:], 3.0)[0] <= 0.1


def test_workflow_options(tmp_path):
    from difffit_screen import workflow_helpers as wh

    (tmp_path / "a.pdb").write_text("")
    (tmp_path / "b.pdb").write_text("")
    cfg = {"map": {"threshold": 0.5, "resolution": None}, "fit": {"device": "cpu"},
           "composite": {"enabled": True, "subunits": [str(tmp_path / "*.pdb")],
                         "copies": {"b": 2, "a": 1}, "clash_fraction": 0.2, "seed": 3}}
    assert wh.composite_subunits(cfg) == [str(tmp_path / "a.pdb"), str(tmp_path / "b.pdb")]
    opts = wh.composite_options(cfg)
    # --device is the job's (workflow_helpers.job_device), not an option of the config
    assert opts == "--threshold 0.5 --clash-fraction 0.2 --seed 3 --copies a=1 b=2"
    assert wh.job_device(cfg, 0, on_cluster=True) == "cpu"
    assert "results/composite/assembly.cif" in wh.composite_targets(cfg)
    assert wh.composite_targets({"composite": {"enabled": False}}) == []
    # the options parse: subunit files first, then the options (--copies takes several values)
    import argparse

    from difffit_screen.cli.composite import add_arguments as add_composite_arguments
    ap = argparse.ArgumentParser()
    add_composite_arguments(ap)
    args = ap.parse_args(["--map", "m.mrc", "--out", "o", *wh.composite_subunits(cfg),
                          *opts.split()])
    assert args.copies == ["a=1", "b=2"] and len(args.inputs) == 2 and args.threshold == 0.5


@pytest.mark.skipif(not HB.exists(), reason="shared data not available")
def test_composite_mode_of_the_workflow_runs(tmp_path):
    """``composite.enabled`` in a config: snakemake runs the composite rule (and only what it
    needs, no library screen), places the 4 globin chains, and a second run has nothing to do."""
    import yaml
    from test_workflow import run_snakemake

    files = write_moved_globins(tmp_path)
    config = {
        "map": {"path": str(HB / "emd_3488.mrc"), "threshold": 0.0863, "resolution": 3.2},
        "library": {"local": []},  # compositing alone
        "fit": {"device": "cpu"},
        "composite": {"enabled": True, "subunits": [str(files["alpha"]), str(files["beta"])],
                      "positions": 40, "rotations": 32, "iterations": 60, "clusters": 8,
                      "max_rounds": 4, "seed": 0, "extra": "--refine-iterations 40"},
    }
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    work = tmp_path / "work"
    work.mkdir()
    target = "results/composite/assembly.json"
    assert "rule fit_shard" not in run_snakemake(work, cfg, "-n").stdout  # all: compositing
    proc = run_snakemake(work, cfg, target)
    assert "rule composite:" in proc.stdout and "rule fit_shard" not in proc.stdout
    info = json.loads((work / target).read_text())
    assert info["placed"] == {"alpha": 2, "beta": 2}, info["placed"]
    for name in ("assembly.cif", "residual.mrc", "rounds.parquet", "composite.cxc", "run.json"):
        assert (work / "results" / "composite" / name).stat().st_size > 0, name
    assert "round 1: fitting alpha, beta" in (work / "logs" / "composite.log").read_text()
    again = run_snakemake(work, cfg, target)
    assert "Nothing to be done" in again.stdout
