"""Tests of library preparation: pLDDT trimming, PAE reading, domain splitting, ``domains`` CLI."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plddt_model import ALL_RESIDUES, KEPT_RESIDUES, LOW_RESIDUES, cube_model, polymer_residues

from difffit_screen.cli import main
from difffit_screen.domains import (
    confident_fraction,
    count_pieces,
    find_pae_file,
    format_residue_ranges,
    index_residues,
    is_predicted_model,
    read_pae,
    split_domains,
    trim_if_predicted,
    trim_low_confidence,
)
from difffit_screen.errors import InputError
from difffit_screen.structures import Atoms, parse_residue_ranges, read_structure

DATA = Path(__file__).parent / "data"
PAE_DIR = DATA / "pae"
GROEL = DATA / "1kp8A_imp_pcafit.pdb"
SHARED = Path(__file__).parents[2] / "shared"
TARDIGRADE = SHARED / "data" / "library_tardigrade_afdb"
# textbook GroEL domains (Braig et al. 1994), residue ranges
GROEL_DOMAINS = {
    "equatorial": [(1, 133), (409, 523)],
    "intermediate": [(134, 190), (377, 408)],
    "apical": [(191, 376)],
}
PAE_6 = np.array([[0.25, 1.5, 2.75, 21.0, 24.5, 27.0],
                  [1.25, 0.25, 1.75, 20.5, 23.0, 25.5],
                  [2.5, 1.5, 0.25, 19.0, 21.5, 24.0],
                  [22.0, 21.25, 19.5, 0.25, 1.5, 2.5],
                  [24.75, 23.5, 22.0, 1.25, 0.25, 1.5],
                  [27.5, 26.0, 24.5, 2.25, 1.75, 0.25]], dtype=np.float32)


def make_atoms(xyz: np.ndarray, plddt: np.ndarray | None = None, name: str = "AF-X1-F1-model_v4",
               atoms_per_residue: int = 2) -> Atoms:
    """Atoms with ``atoms_per_residue`` atoms (CA first) per residue at ``xyz`` (``(R, 3)``)."""
    n_res = len(xyz)
    k = atoms_per_residue
    plddt = np.full(n_res, 90.0) if plddt is None else np.asarray(plddt, dtype=float)
    names = np.array((["CA", "CB", "N", "O"] * k)[:k])
    offsets = np.zeros((k, 3))
    offsets[:, 0] = np.arange(k) * 1.5
    return Atoms(
        name=name,
        xyz=(np.repeat(xyz, k, axis=0) + np.tile(offsets, (n_res, 1))).astype(np.float32),
        element=np.full(n_res * k, "C"),
        atom_name=np.tile(names, n_res),
        res_name=np.full(n_res * k, "ALA"),
        res_seq=np.repeat(np.arange(1, n_res + 1), k).astype(np.int32),
        chain=np.full(n_res * k, "A"),
        ins_code=np.full(n_res * k, ""),
        b_iso=np.repeat(plddt, k).astype(np.float32),
        polymer=np.ones(n_res * k, dtype=bool),
        source=f"{name}.pdb",
    )


def blob(n: int, centre, rng: np.random.Generator, radius: float = 12.0) -> np.ndarray:
    """``(n, 3)`` points along a random walk of 3.8 Å steps kept inside a sphere."""
    pts = [np.asarray(centre, float)]
    while len(pts) < n:
        step = rng.normal(size=3)
        cand = pts[-1] + 3.8 * step / np.linalg.norm(step)
        if np.linalg.norm(cand - centre) <= radius:
            pts.append(cand)
    return np.array(pts)


def boundaries(ranges: list[tuple[int, int]]) -> list[int]:
    return [b for r in ranges for b in r]


# --- residue ranges ------------------------------------------------------------------------


def test_residue_ranges_round_trip():
    atoms = make_atoms(np.zeros((10, 3)))
    res = index_residues(atoms)
    text = format_residue_ranges(res, np.array([0, 1, 2, 6, 7, 9]))
    assert text == "A:1-3,A:7-8,A:10-10"
    assert parse_residue_ranges(text) == [("A", 1, 3), ("A", 7, 8), ("A", 10, 10)]
    assert parse_residue_ranges("B:-3-5") == [("B", -3, 5)]


def test_count_pieces_skips_left_out_residues():
    labels = np.array([0, 0, -1, 0, 1, 1, 0, 0])
    assert count_pieces(labels, 0) == 2
    assert count_pieces(labels, 1) == 1


# --- pLDDT trimming ------------------------------------------------------------------------


def test_trim_removes_exactly_the_low_residues():
    plddt = np.array([95, 69.9, 70.0, 30, 88, 50, 71, 100], dtype=float)
    atoms = make_atoms(np.arange(24, dtype=float).reshape(8, 3), plddt, atoms_per_residue=3)
    out = trim_low_confidence(atoms, 70.0)
    kept = sorted(set(out.res_seq.tolist()))
    assert kept == [1, 3, 5, 7, 8]
    assert len(out) == 3 * len(kept)  # whole residues
    assert out.b_iso.min() >= 70.0
    assert out.meta["n_trimmed_residues"] == 3


def test_trim_keeps_ligands():
    atoms = make_atoms(np.zeros((3, 3)), [90, 10, 90])
    atoms.polymer[-1] = False  # pretend the last atom is a ligand with low B
    atoms.b_iso[-1] = 5.0
    out = trim_low_confidence(atoms, 70.0)
    assert (~out.polymer).sum() == 1


def test_trim_removes_low_plddt_residues_whole_and_keeps_the_rest():
    atoms = cube_model(ligand=True)  # per-atom pLDDT, as AlphaFold 3 writes it
    assert polymer_residues(atoms) == dict.fromkeys(ALL_RESIDUES, 2)
    for out in (trim_low_confidence(atoms, 70.0), trim_if_predicted(atoms, 70.0)):
        assert polymer_residues(out) == dict.fromkeys(KEPT_RESIDUES, 2)  # whole residues
        assert out.meta["n_trimmed_residues"] == len(LOW_RESIDUES)
        assert (~out.polymer).sum() == 1  # the ligand stays
    doms = split_domains(atoms, plddt_min=70.0)
    got = [polymer_residues(d) for d in doms]
    assert {k: v for g in got for k, v in g.items()} == dict.fromkeys(KEPT_RESIDUES, 2)
    assert all(d.meta["plddt_min"] == 70.0 for d in doms)
    untrimmed = split_domains(atoms, plddt_min=None)
    assert set().union(*map(polymer_residues, untrimmed)) == ALL_RESIDUES


def test_trim_leaves_models_whose_b_factors_are_not_plddt():
    experimental = cube_model(name="1abcA")
    assert trim_if_predicted(experimental, 70.0) is experimental
    assert trim_if_predicted(cube_model(), None).b_iso.min() < 70.0
    assert trim_if_predicted(cube_model(), 70.0, predicted=False).b_iso.min() < 70.0
    said_predicted = trim_if_predicted(cube_model(name="1abcA"), 70.0, predicted=True)
    assert set(polymer_residues(said_predicted)) == KEPT_RESIDUES
    doms = split_domains(experimental, plddt_min=70.0)
    assert set().union(*map(polymer_residues, doms)) == ALL_RESIDUES


def test_predicted_model_detection():
    xyz = np.zeros((3, 3))
    assert is_predicted_model(make_atoms(xyz, [90.0, 80.0, 95.0], name="AF-P12345-F1-model_v4"))
    plain = make_atoms(xyz, [90.0, 80.0, 95.0], name="1abcA")
    plain.source = "1abcA.pdb"
    assert not is_predicted_model(plain)
    plain.meta["source_db"] = "AlphaFold DB"
    assert is_predicted_model(plain)
    crystal = make_atoms(xyz, [20.0, 150.0, 30.0], name="AF-P1-F1-model_v4")
    assert not is_predicted_model(crystal)  # B-factors above 100 are not pLDDT
    assert not is_predicted_model(make_atoms(xyz, [0.0, 0.0, 0.0], name="AF-P1-F1-model_v4"))


def test_split_does_not_trim_experimental_structures():
    atoms = read_structure(GROEL)  # B-factors are all 0.00: trimming would remove everything
    doms = split_domains(atoms, plddt_min=70.0)
    assert sum(d.meta["n_residues"] for d in doms) == len(index_residues(atoms))
    assert all(d.meta["plddt_min"] is None for d in doms)


# --- PAE -------------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", sorted(p.name for p in PAE_DIR.glob("*.json")))
def test_read_pae_layouts(filename):
    pae = read_pae(PAE_DIR / filename)
    assert pae.shape == (6, 6)
    assert pae.dtype == np.float32
    np.testing.assert_allclose(pae, PAE_6)  # row = aligned residue: no transposition


def test_read_pae_gzip(tmp_path):
    target = tmp_path / "AF-TEST01-F1-predicted_aligned_error_v4.json.gz"
    with gzip.open(target, "wb") as fh:
        fh.write((PAE_DIR / "AF-TEST01-F1-predicted_aligned_error_v4.json").read_bytes())
    np.testing.assert_allclose(read_pae(target), PAE_6)


@pytest.mark.parametrize("content", ['{"plddt": [1, 2]}', "[1, 2]", "not json",
                                     '{"pae": [[1, 2], [3, 4], [5, 6]]}',
                                     '[{"residue1": [1, 2], "residue2": [1], "distance": [0]}]'])
def test_read_pae_rejects_bad_files(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=r"bad\.json"):
        read_pae(path)
    with pytest.raises(InputError, match="not found"):
        read_pae(tmp_path / "missing.json")


def test_find_pae_file_naming(tmp_path):
    for v in (1, 2, 4):
        (tmp_path / f"AF-P12345-F1-predicted_aligned_error_v{v}.json").write_text("[]")
    (tmp_path / "mymodel.json").write_text("{}")
    found = find_pae_file(tmp_path, "AF-P12345-F1-model_v4")
    assert found.name == "AF-P12345-F1-predicted_aligned_error_v4.json"
    assert find_pae_file(tmp_path, "P12345").name.endswith("_v4.json")
    assert find_pae_file(tmp_path, "mymodel") == tmp_path / "mymodel.json"
    assert find_pae_file(tmp_path, "other") is None


def block_pae(blocks: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, n)`` PAE: 1-4 Å inside each block of residue indices, 18-30 Å elsewhere."""
    pae = rng.uniform(18.0, 30.0, size=(n, n))
    for b in blocks:
        pae[np.ix_(b, b)] = rng.uniform(1.0, 4.0, size=(len(b), len(b)))
    np.fill_diagonal(pae, 0.25)
    return pae.astype(np.float32)


def test_pae_split_recovers_blocks():
    rng = np.random.default_rng(0)
    blocks = [np.r_[0:60, 150:200], np.arange(60, 150), np.arange(200, 260)]
    xyz = np.concatenate([blob(60, (0, 0, 0), rng), blob(90, (40, 0, 0), rng),
                          blob(50, (0, 0, 0), rng), blob(60, (0, 40, 0), rng)])
    atoms = make_atoms(xyz, name="AF-Q9XYZ1-F1-model_v4")
    atoms.meta["accession"] = "Q9XYZ1"
    doms = split_domains(atoms, pae=block_pae(blocks, 260, rng))
    assert [d.name for d in doms] == ["Q9XYZ1_D1", "Q9XYZ1_D2", "Q9XYZ1_D3"]
    assert [d.meta["residue_ranges"] for d in doms] == ["A:1-60,A:151-200", "A:61-150",
                                                        "A:201-260"]
    assert all(d.meta["method"] == "pae:louvain(seed=0)" for d in doms)
    assert all(d.meta["accession"] == "Q9XYZ1" for d in doms)
    assert [d.meta["n_pieces"] for d in doms] == [2, 1, 1]
    assert doms[0].meta["parent"] == "AF-Q9XYZ1-F1-model_v4"
    greedy = split_domains(atoms, pae=block_pae(blocks, 260, rng), pae_method="greedy")
    assert [d.meta["residue_ranges"] for d in greedy] == [d.meta["residue_ranges"] for d in doms]
    assert greedy[0].meta["method"] == "pae:greedy"


def test_pae_split_trims_then_drops_disordered_tail():
    rng = np.random.default_rng(1)
    blocks = [np.arange(0, 80), np.arange(80, 160)]
    xyz = np.concatenate([blob(80, (0, 0, 0), rng), blob(80, (40, 0, 0), rng),
                          100 + 3.8 * np.arange(30)[:, None] * np.array([[1.0, 0, 0]])])
    plddt = np.r_[np.full(160, 92.0), np.full(30, 35.0)]
    doms = split_domains(make_atoms(xyz, plddt), pae=block_pae(blocks, 190, rng))
    assert [d.meta["residue_ranges"] for d in doms] == ["A:1-80", "A:81-160"]
    assert all(d.b_iso.min() >= 70 for d in doms)


def test_pae_shape_mismatch_is_an_input_error():
    atoms = make_atoms(np.zeros((5, 3)))
    with pytest.raises(InputError, match="PAE matrix is 6x6"):
        split_domains(atoms, pae=PAE_6)


# --- structure-only split: GroEL -------------------------------------------------------------


@pytest.fixture(scope="module")
def groel_domains():
    return split_domains(read_structure(GROEL))


def test_groel_file_numbering():
    res = index_residues(read_structure(GROEL))
    assert (res.res_seq[0], res.res_seq[-1], len(res)) == (2, 526, 525)


def test_groel_three_textbook_domains(groel_domains):
    assert len(groel_domains) == 3
    got = [parse_residue_ranges(d.meta["residue_ranges"]) for d in groel_domains]
    expected = [GROEL_DOMAINS["equatorial"], GROEL_DOMAINS["intermediate"],
                GROEL_DOMAINS["apical"]]
    for dom, exp in zip(got, expected, strict=True):
        assert len(dom) == len(exp)  # equatorial and intermediate are two segments each
        got_b = boundaries([(a, b) for _, a, b in dom])
        # the file ends (2, 526) are not domain boundaries; every interior one within 10
        for g, e in zip(got_b, boundaries(exp), strict=True):
            if e in (1, 523):
                continue
            assert abs(g - e) <= 10, (dom, exp)
    assert [d.name for d in groel_domains] == [f"1kp8A_imp_pcafit_D{i}" for i in (1, 2, 3)]
    assert [d.meta["n_pieces"] for d in groel_domains] == [2, 2, 1]


def test_groel_domains_partition_the_chain(groel_domains):
    seqs = [set(d.res_seq.tolist()) for d in groel_domains]
    assert sum(len(s) for s in seqs) == 525
    assert set.union(*seqs) == set(range(2, 527))
    for d in groel_domains:
        assert d.meta["parent"] == "1kp8A_imp_pcafit"
        assert 0.8 < d.meta["compactness"] < 1.3
        assert d.meta["domain_index"] == int(d.name[-1])


def test_groel_size_limits():
    atoms = read_structure(GROEL)
    small = split_domains(atoms, max_size=150)
    assert all(d.meta["n_residues"] <= 150 for d in small)
    assert len(small) > 3
    whole = split_domains(atoms, min_size=300)
    assert len(whole) == 1 and whole[0].meta["n_residues"] == 525


def test_groel_with_textbook_pae_is_exact():
    atoms = read_structure(GROEL)
    res_seq = index_residues(atoms).res_seq
    blocks = [np.flatnonzero(np.any([(res_seq >= a) & (res_seq <= b) for a, b in rng_], 0))
              for rng_ in GROEL_DOMAINS.values()]
    blocks[0] = np.union1d(blocks[0], np.flatnonzero(res_seq > 523))  # file runs to 526
    pae = block_pae(blocks, len(res_seq), np.random.default_rng(2))
    doms = split_domains(atoms, pae=pae)
    assert [d.meta["residue_ranges"] for d in doms] == ["A:2-133,A:409-526", "A:134-190,A:377-408",
                                                        "A:191-376"]


# --- CLI ----------------------------------------------------------------------------------


def test_cli_domains_with_pae(tmp_path, capsys):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    shutil.copy(GROEL, model_dir / "groel.pdb")
    atoms = read_structure(GROEL)
    n = len(index_residues(atoms))
    pae = block_pae([np.arange(0, 200), np.arange(200, n)], n, np.random.default_rng(3))
    pae_dir = tmp_path / "pae"
    pae_dir.mkdir()
    (pae_dir / "groel.json").write_text(json.dumps({"pae": pae.round(2).tolist()}))
    out = tmp_path / "out"
    assert main(["domains", "--pae-dir", str(pae_dir), "--out", str(out), str(model_dir)]) == 0
    table = pd.read_parquet(out / "domains.parquet")
    assert table["name"].tolist() == ["groel_D1", "groel_D2"]
    assert table["method"].unique().tolist() == ["pae:louvain(seed=0)"]
    assert table["residue_ranges"].tolist() == ["A:2-201", "A:202-526"]
    assert table["pae_file"].str.endswith("groel.json").all()
    back = read_structure(out / "groel_D2.cif")
    assert len(index_residues(back)) == 325
    text = capsys.readouterr().out
    assert "models: 1" in text and "domains: 2" in text


def test_cli_reports_bad_model_and_goes_on(tmp_path, capsys):
    bad = tmp_path / "broken.pdb"
    bad.write_text("not a structure\n")
    out = tmp_path / "out"
    assert main(["domains", "--out", str(out), str(bad), str(GROEL)]) == 0
    assert len(pd.read_parquet(out / "domains.parquet")) == 3
    assert "1 failed" in capsys.readouterr().out
    assert main(["domains", "--out", str(out), str(bad)]) == 2


# --- AlphaFold DB library (../shared) -------------------------------------------------------


@pytest.mark.shared
@pytest.mark.skipif(not TARDIGRADE.is_dir(), reason="../shared/data is absent")
def test_tardigrade_models(tmp_path):
    files = sorted(TARDIGRADE.glob("*.pdb.gz"))[:8]
    out = tmp_path / "out"
    assert main(["domains", "--out", str(out), *map(str, files)]) == 0
    table = pd.read_parquet(out / "domains.parquet")
    assert len(table) > 0
    assert (table["n_residues"] >= 40).all() and (table["n_residues"] <= 600).all()
    assert (table["plddt_min"] == 70.0).all()
    for row in table.itertuples():
        assert row.name == f"{row.parent}_D{row.domain_index}"
        dom = read_structure(row.path)
        assert dom.b_iso.min() >= 70.0  # trimmed
        assert len(index_residues(dom)) == row.n_residues


def test_confident_fraction_counts_residues_at_plddt_50_or_more():
    model = cube_model()  # residues 41-50 at 40; residue 20 mean 65, residue 30 mean 72.5
    assert confident_fraction(model) == pytest.approx(115 / 125)
    disordered = cube_model()
    disordered.b_iso[:] = 35.0
    disordered.b_iso[:20] = 80.0  # 10 residues confident of 125
    assert confident_fraction(disordered) == pytest.approx(10 / 125)
    experimental = cube_model(name="1abc_A")  # not named as a prediction: no pLDDT
    assert confident_fraction(experimental) is None
    assert confident_fraction(experimental, predicted=True) == pytest.approx(115 / 125)
