"""The library store: packing candidates into shard Parquet files and reading them back."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from plddt_model import ALL_RESIDUES, KEPT_RESIDUES, cube_model, polymer_residues

from difffit_screen import store
from difffit_screen.annotations import chain_annotation
from difffit_screen.cli import main
from difffit_screen.errors import InputError
from difffit_screen.library import MANIFEST_SCHEMA, local_rows
from difffit_screen.maps import file_sha256
from difffit_screen.structures import Atoms, read_structure, read_structure_annotated
from difffit_screen.tables import FAILURES_SCHEMA, read_table, table_from_rows, write_table

SERVICES = Path(__file__).parent / "data" / "services"
AFDB_FILES = SERVICES / "afdb" / "files"
PDB_5ME2 = SERVICES / "rcsb" / "download" / "5ME2.cif.gz"
MODELS = ["A0A1D1W535", "A0A1D1WBC0", "A0A1D1VEJ5", "A0A1D1VL39"]


def afdb_row(acc: str, fmt: str = "pdb", **extra) -> dict:
    path = AFDB_FILES / f"AF-{acc}-F1-model_v6.{fmt}.gz"
    return {"candidate": acc, "source_kind": "afdb", "accession": acc, "version": "6",
            "path": str(path), "url": f"https://alphafold.ebi.ac.uk/files/{path.name[:-3]}",
            "sha256": file_sha256(path), "pae_path": None, "chain": None,
            "n_bytes": path.stat().st_size, **extra}


def pdb_rows(chains=("A", "B", "C", "D")) -> list[dict]:
    return [{"candidate": f"5ME2_{c}", "source_kind": "pdb", "accession": "5ME2",
             "version": None, "path": str(PDB_5ME2), "url": None, "sha256": file_sha256(PDB_5ME2),
             "pae_path": None, "chain": c, "n_bytes": PDB_5ME2.stat().st_size} for c in chains]


def expected_atoms(row: dict) -> Atoms:
    """What the store must give back for a manifest row: the parsed file plus provenance."""
    atoms, annotations = read_structure_annotated(row["path"])
    if row.get("chain"):
        atoms = atoms.subset(atoms.chain == row["chain"])
        atoms.meta = chain_annotation(annotations, row["chain"])
    atoms.name, atoms.source = row["candidate"], row.get("url") or row["path"]
    atoms.meta = store.candidate_meta(row, atoms.meta)
    return atoms


def read_all(paths) -> dict[str, Atoms]:
    return {a.name: a for p in paths for a in store.read_shard(p)}


# --- round trip --------------------------------------------------------------------------------

def hand_made_atoms() -> Atoms:
    """Atoms with insertion codes, a ligand atom, odd names and extra meta."""
    n = 5
    return Atoms(
        name="toy", xyz=np.arange(n * 3, dtype=np.float32).reshape(n, 3) / 7,
        element=np.array(["C", "N", "O", "FE", "C"]), atom_name=np.array(["CA", "N", "O", "FE",
                                                                           "C1'"]),
        res_name=np.array(["ALA", "ALA", "GLY", "HEM", "A"]),
        res_seq=np.array([1, 1, 2, 201, -3], dtype=np.int32),
        chain=np.array(["A", "A", "A", "A", "XY"]), ins_code=np.array(["", "", "B", "", ""]),
        b_iso=np.array([90.5, 90.5, 30.25, 12.0, 55.0], dtype=np.float32),
        polymer=np.array([True, True, True, False, True]), source="somewhere/toy.cif",
        meta={"source_kind": "local", "accession": None, "version": None, "sha256": "ab",
              "parent": "big", "residue_ranges": "A:1-2", "url": None, "path": "toy.cif",
              "domain_index": np.int64(2), "mean_plddt": 77.5, "method": "pae"})


def test_round_trip_is_exact(tmp_path):
    originals = [expected_atoms(afdb_row("A0A1D1W535")), expected_atoms(pdb_rows(["B"])[0]),
                 hand_made_atoms()]
    store.write_shard(originals, tmp_path / "s.parquet")
    back = store.read_shard(tmp_path / "s.parquet")
    assert [a.name for a in back] == [a.name for a in originals]
    for a, b in zip(originals, back, strict=True):
        assert store.atoms_equal(a, b), a.name
        assert b.xyz.dtype == np.float32 and b.xyz.shape == a.xyz.shape
        assert b.res_seq.dtype == np.int32 and b.polymer.dtype == bool
        assert b.b_iso.dtype == np.float32 and b.element.dtype.kind == "U"
    assert back[2].meta["domain_index"] == 2 and back[2].ins_code[2] == "B"


def test_round_trip_in_small_batches_and_index(tmp_path):
    originals = [expected_atoms(afdb_row(acc)) for acc in MODELS]
    store.write_shard(originals, tmp_path / "s.parquet")
    back = list(store.iter_shard(tmp_path / "s.parquet", batch_size=3))
    assert all(store.atoms_equal(a, b) for a, b in zip(originals, back, strict=True))
    index = store.read_shard_index(tmp_path / "s.parquet").to_pylist()
    assert [r["n_atoms"] for r in index] == [len(a) for a in originals]
    assert [r["n_residues"] for r in index] == [65, 69, 79, 82]  # INDEX.tsv of the library
    assert index[0]["accession"] == "A0A1D1W535" and index[0]["version"] == "6"


def test_empty_shard_has_the_store_schema(tmp_path):
    path = store.write_shard([], tmp_path / "empty.parquet")
    assert pq.read_schema(path).equals(store.STORE_SCHEMA, check_metadata=True)
    assert store.read_shard(path) == []
    assert store.is_shard_file(path)


def test_read_shard_rejects_other_files(tmp_path):
    write_table(table_from_rows([], FAILURES_SCHEMA), tmp_path / "f.parquet")
    with pytest.raises(InputError, match="not a library shard"):
        store.read_shard(tmp_path / "f.parquet")
    assert not store.is_shard_file(tmp_path / "f.parquet")
    with pytest.raises(InputError, match="not found"):
        store.read_shard(tmp_path / "missing.parquet")


# --- balancing ---------------------------------------------------------------------------------

def test_assign_shards_greedy_and_deterministic():
    sizes = [5, 10, 3, 10, 8, 1]
    shards = store.assign_shards(sizes, 3)
    # sorted: 10(i1) 10(i3) 8(i4) 5(i0) 3(i2) 1(i5) -> loads 0,0,0
    assert shards == [[1, 2], [3, 5], [0, 4]]
    assert store.assign_shards(sizes, 3) == shards
    assert sorted(i for s in shards for i in s) == list(range(len(sizes)))
    assert store.assign_shards([4, 2], 4) == [[0], [1], [], []]
    with pytest.raises(InputError):
        store.assign_shards(sizes, 0)


def test_assign_shards_balances_random_sizes():
    rng = np.random.default_rng(0)
    sizes = rng.integers(500, 20000, size=300)
    loads = [sizes[s].sum() for s in store.assign_shards(sizes, 7)]
    assert max(loads) - min(loads) <= sizes.max()


# --- pack --------------------------------------------------------------------------------------

def test_pack_library_round_trip_and_balance(tmp_path):
    rows = [afdb_row(acc) for acc in MODELS] + pdb_rows()
    outs = [tmp_path / "shards" / f"{i}.parquet" for i in range(3)]
    failures = store.pack_library(rows, outs)
    assert failures == []
    got = read_all(outs)
    assert sorted(got) == sorted(r["candidate"] for r in rows)
    for row in rows:
        assert store.atoms_equal(got[row["candidate"]], expected_atoms(row)), row["candidate"]
    sizes = [len(expected_atoms(r)) for r in rows]
    expected = [[rows[i]["candidate"] for i in s] for s in store.assign_shards(sizes, 3)]
    assert [[a.name for a in store.read_shard(p)] for p in outs] == expected
    assert not [p for p in (tmp_path / "shards").iterdir() if p.suffix != ".parquet"]


def test_pack_writes_empty_shards(tmp_path):
    outs = [tmp_path / f"{i}.parquet" for i in range(4)]
    assert store.pack_library([afdb_row("A0A1D1W535")], outs) == []
    assert [len(store.read_shard(p)) for p in outs] == [1, 0, 0, 0]
    assert store.pack_library([], outs) == []
    assert all(pq.read_schema(p).equals(store.STORE_SCHEMA) for p in outs)


def test_pack_failures_do_not_stop_the_library(tmp_path):
    garbage = tmp_path / "garbage.pdb"
    garbage.write_text("HELLO WORLD\n")
    empty = tmp_path / "empty.cif"
    empty.write_text("")
    rows = [afdb_row("A0A1D1VL39"), *local_rows([str(garbage), str(empty)]).rows,
            *pdb_rows(["A", "Z"])]
    failures = store.pack_library(rows, [tmp_path / "s.parquet"])
    assert [(f["candidate"], f["stage"]) for f in failures] == [
        ("garbage", "pack"), ("empty", "pack"), ("5ME2_Z", "pack")]
    assert "no atoms in chain Z" in failures[2]["reason"]
    assert [a.name for a in store.read_shard(tmp_path / "s.parquet")] == ["A0A1D1VL39", "5ME2_A"]


def test_pack_with_a_prepare_callable(tmp_path):
    seen_pae = []

    def halves(atoms: Atoms, pae_path: str | None) -> list[Atoms]:
        seen_pae.append(pae_path)
        if atoms.name == "A0A1D1VEJ5":
            raise ValueError("cannot split this one")
        mid = len(atoms) // 2
        first = atoms.subset(np.arange(mid), name=f"{atoms.name}_D1")
        first.meta.update(residue_ranges="A:1-10", method="test")
        second = atoms.subset(np.arange(mid, len(atoms)), name=f"{atoms.name}_D2")
        empty = atoms.subset(np.zeros(len(atoms), bool), name=f"{atoms.name}_D3")
        return [first, second, empty, first]

    rows = [afdb_row("A0A1D1W535", pae_path="pae.json"), afdb_row("A0A1D1VEJ5")]
    failures = store.pack_library(rows, [tmp_path / "a.parquet", tmp_path / "b.parquet"], halves)
    assert seen_pae == ["pae.json", None]
    assert [f["candidate"] for f in failures] == ["A0A1D1W535_D3", "A0A1D1W535_D1",
                                                  "A0A1D1VEJ5"]
    assert "cannot split" in failures[2]["reason"]
    got = read_all([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    assert sorted(got) == ["A0A1D1W535_D1", "A0A1D1W535_D2"]
    d1, d2 = got["A0A1D1W535_D1"], got["A0A1D1W535_D2"]
    assert d1.meta["parent"] == d2.meta["parent"] == "A0A1D1W535"
    assert d1.meta["residue_ranges"] == "A:1-10" and d1.meta["method"] == "test"
    assert d1.meta["accession"] == "A0A1D1W535" and d1.meta["version"] == "6"
    assert len(d1) + len(d2) == len(read_structure(rows[0]["path"]))


def test_make_prepare_full_trims_plddt_of_afdb_models_only():
    prepare = store.make_prepare("full", plddt_min=70)
    af = expected_atoms(afdb_row("A0A1D1WBC0"))
    (trimmed,) = prepare(af, None)
    assert 0 < len(trimmed) < len(af) and trimmed.b_iso.min() >= 70
    pdb = expected_atoms(pdb_rows(["A"])[0])
    assert len(prepare(pdb, None)[0]) == len(pdb)
    with pytest.raises(InputError):
        store.make_prepare("halves")


@pytest.mark.parametrize("mode", ["full", "domains", "both"])
def test_make_prepare_trims_low_plddt_residues_whole(mode):
    atoms = cube_model(name="T00001", ligand=True, source_kind="afdb")  # per-atom pLDDT
    out = store.make_prepare(mode, plddt_min=70)(atoms, None)
    full = [a for a in out if a.name == "T00001"]
    domains = [a for a in out if a.name != "T00001"]
    assert len(full) == (mode != "domains") and bool(domains) == (mode != "full")
    for group in (full, domains):
        if group:  # every kept residue whole, every low one gone
            residues = {k: v for a in group for k, v in polymer_residues(a).items()}
            assert residues == dict.fromkeys(KEPT_RESIDUES, 2)
    for a in full:
        assert (~a.polymer).sum() == 1  # the ligand stays (the readers drop ligands anyway)
        assert a.meta["plddt_min"] == 70.0


def test_make_prepare_trims_only_models_whose_b_factors_are_plddt():
    prepare = store.make_prepare("both", plddt_min=70)
    cases = {"pdb": (cube_model(name="1ABC_A", source_kind="pdb"), ALL_RESIDUES),
             "local": (cube_model(name="model", source_kind="local"), ALL_RESIDUES),
             "local AF": (cube_model(source_kind="local"), KEPT_RESIDUES),
             "local header": (cube_model(name="model", source_kind="local", predicted=True),
                              KEPT_RESIDUES),
             "computed model": (cube_model(name="AF_T1", source_kind="pdb", predicted=True),
                                KEPT_RESIDUES)}
    for case, (atoms, expected) in cases.items():
        full, *domains = prepare(atoms, None)
        assert set(polymer_residues(full)) == expected, case
        assert set().union(*map(polymer_residues, domains)) == expected, case


# --- CLI ---------------------------------------------------------------------------------------

def write_manifest(rows, path: Path) -> Path:
    return write_table(table_from_rows(rows, MANIFEST_SCHEMA), path)


def test_cli_pack(tmp_path):
    bad = tmp_path / "bad.cif"
    bad.write_text("data_x\n")
    rows = [afdb_row(acc) for acc in MODELS[:3]] + local_rows([str(bad)]).rows
    manifest = write_manifest(rows, tmp_path / "manifest.parquet")
    outs = [str(tmp_path / "shards" / f"{i}-of-2.parquet") for i in (1, 2)]
    argv = ["pack", "--manifest", str(manifest), "--failures", str(tmp_path / "fail.parquet"),
            "--out", *outs]
    assert main(argv) == 0
    assert sorted(read_all(outs)) == sorted(MODELS[:3])
    fails = read_table(tmp_path / "fail.parquet", FAILURES_SCHEMA).to_pylist()
    assert [(f["candidate"], f["stage"]) for f in fails] == [("bad", "pack")]


def test_cli_pack_domains(tmp_path):
    pytest.importorskip("difffit_screen.domains")
    shutil.copy(AFDB_FILES / "AF-A0A1D1W535-F1-predicted_aligned_error_v6.json.gz",
                tmp_path / "pae.json.gz")
    rows = [afdb_row("A0A1D1W535", pae_path=str(tmp_path / "pae.json.gz")), *pdb_rows(["A"])]
    manifest = write_manifest(rows, tmp_path / "manifest.parquet")
    out = tmp_path / "s.parquet"
    argv = ["pack", "--manifest", str(manifest), "--failures", str(tmp_path / "f.parquet"),
            "--out", str(out), "--prepare", "both", "--plddt-min", "70"]
    assert main(argv) == 0
    got = read_all([out])
    assert {"A0A1D1W535", "5ME2_A"} <= set(got)
    domains = [a for a in got.values() if a.meta["parent"] is not None]
    assert domains and all(a.name.startswith(f"{a.meta['parent']}_D") for a in domains)
    assert all(a.meta["residue_ranges"] for a in domains)


def test_cli_pack_missing_manifest(tmp_path, capsys):
    argv = ["pack", "--manifest", str(tmp_path / "nope.parquet"), "--failures",
            str(tmp_path / "f.parquet"), "--out", str(tmp_path / "s.parquet")]
    assert main(argv) == 2
    assert "manifest not found" in capsys.readouterr().err
