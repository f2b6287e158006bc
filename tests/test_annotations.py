"""Names and links of candidates: AlphaFold headers, the AFDB API and RCSB mmCIF, carried through
fetch, pack, fit and the fitted mmCIF headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from difffit_screen import library as lib
from difffit_screen import store
from difffit_screen.annotations import (
    annotation_from_prediction,
    candidate_accession,
    entry_url,
    pdb_header_annotations,
    read_header_annotations,
    row_annotation,
)
from difffit_screen.structures import read_structure, write_structure
from difffit_screen.tables import read_table

DATA = Path(__file__).parent / "data"
DEMO = DATA / "demo_library"
SERVICES = DATA / "services"
PACRG = "PARKIN CO-REGULATED PROTEIN"
TETRAHYMENA = "TETRAHYMENA THERMOPHILA (STRAIN SB210)"


@pytest.fixture
def client():
    c = lib.HttpClient(retries=2, timeout=5, backoff=0.01, rate=0)
    yield c
    c.close()


@pytest.mark.parametrize("name, acc", [("I7MLV6_D3", "I7MLV6"), ("I7M317_D1", "I7M317")])
def test_alphafold_pdb_headers_name_the_paralogs(name, acc):
    atoms = read_structure(DEMO / f"{name}.pdb")
    assert atoms.meta["name"] == PACRG
    assert atoms.meta["organism"] == TETRAHYMENA
    assert atoms.meta["taxid"] == 312017
    assert atoms.meta["uniprot"] == acc
    row = row_annotation(atoms.meta)
    assert row["url"] == f"https://alphafold.ebi.ac.uk/entry/{acc}"
    assert row["name"].lower() == "parkin co-regulated protein"


def test_decoy_header_with_a_long_accession():
    ann = read_header_annotations(DEMO / "decoys" / "A0A1D1W774.pdb.gz")[""]
    assert ann["name"] == "ALDO_KET_RED DOMAIN-CONTAINING PROTEIN"
    assert ann["uniprot"] == "A0A1D1W774"  # from the title: DBREF's column is 8 wide
    assert ann["organism"] == "RAMAZZOTTIUS VARIEORNATUS" and ann["taxid"] == 947166


def test_pdb_header_chains_and_genes():
    lines = [
        "TITLE     CRYOEM STRUCTURE OF HAEMOGLOBIN",
        "COMPND    MOL_ID: 1;",
        "COMPND   2 MOLECULE: HEMOGLOBIN SUBUNIT ALPHA;",
        "COMPND   3 CHAIN: A, C;",
        "COMPND   4 MOL_ID: 2;",
        "COMPND   5 MOLECULE: HEMOGLOBIN SUBUNIT BETA;",
        "COMPND   6 CHAIN: B, D",
        "SOURCE    MOL_ID: 1;",
        "SOURCE   2 ORGANISM_SCIENTIFIC: HOMO SAPIENS;",
        "SOURCE   3 ORGANISM_TAXID: 9606;",
        "SOURCE   4 GENE: HBA1, HBA2;",
        "SOURCE   5 MOL_ID: 2;",
        "SOURCE   6 ORGANISM_SCIENTIFIC: HOMO SAPIENS;",
        "SOURCE   7 ORGANISM_TAXID: 9606;",
        "SOURCE   8 GENE: HBB",
        "DBREF  5ME2 B    1   146  UNP    P68871   HBB_HUMAN        2    147",
    ]
    ann = pdb_header_annotations(lines)
    assert ann["C"]["name"] == "HEMOGLOBIN SUBUNIT ALPHA" and ann["C"]["gene"] == "HBA1, HBA2"
    assert ann["D"]["name"] == "HEMOGLOBIN SUBUNIT BETA" and ann["B"]["uniprot"] == "P68871"
    assert ann["B"]["taxid"] == 9606 and ann[""]["name"] == "HEMOGLOBIN SUBUNIT ALPHA"


def test_an_experimental_title_naming_alphafold_is_not_a_prediction():
    lines = ["TITLE     CRYO-EM STRUCTURE OF X DOCKED WITH AN ALPHAFOLD MODEL",
             "COMPND    MOL_ID: 1;", "COMPND   2 MOLECULE: PROTEIN X;", "COMPND   3 CHAIN: A",
             "DBREF  9XYZ A    1   100  UNP    P12345   X_HUMAN          1    100"]
    ann = pdb_header_annotations(lines)["A"]
    assert not ann["predicted"] and ann["name"] == "PROTEIN X"
    assert entry_url("local", None, ann["uniprot"], ann["predicted"]) == (
        "https://www.uniprot.org/uniprotkb/P12345/entry")


def test_modelcif_target_reference(tmp_path):
    """AlphaFold DB mmCIF (ModelCIF): names from _entity and _ma_target_ref_db_details."""
    text = """data_AF-P69905-F1
_struct.title 'AlphaFold prediction for Hemoglobin subunit alpha (P69905)'
loop_
_entity.id
_entity.type
_entity.pdbx_description
1 polymer 'Hemoglobin subunit alpha'
loop_
_entity_poly.entity_id
_entity_poly.pdbx_strand_id
1 A
loop_
_ma_target_ref_db_details.target_entity_id
_ma_target_ref_db_details.db_name
_ma_target_ref_db_details.db_accession
_ma_target_ref_db_details.gene_name
_ma_target_ref_db_details.ncbi_taxonomy_id
_ma_target_ref_db_details.organism_scientific
1 UNP P69905 HBA1 9606 'Homo sapiens'
"""
    path = tmp_path / "af.cif"
    path.write_text(text)
    ann = read_header_annotations(path)
    assert ann["A"] == ann[""] | {"title": ann["A"]["title"]}
    assert (ann["A"]["name"], ann["A"]["gene"], ann["A"]["organism"], ann["A"]["taxid"],
            ann["A"]["uniprot"]) == ("Hemoglobin subunit alpha", "HBA1", "Homo sapiens", 9606,
                                     "P69905")
    assert ann["A"]["predicted"]


def test_files_without_headers_keep_nulls(tmp_path):
    atoms = read_structure(DEMO / "I7MLV6_D3.pdb")
    atoms.meta = {}
    bare = write_structure(atoms, tmp_path / "bare.pdb")
    back = read_structure(bare)
    assert row_annotation(back.meta) == dict.fromkeys(["name", "gene", "organism", "taxid",
                                                      "url"])


def test_prediction_api_entry_and_links():
    ann = annotation_from_prediction({"uniprotAccession": "Q9X", "uniprotDescription": "Foo",
                                      "gene": "fooA", "organismScientificName": "E. coli",
                                      "taxId": 562})
    assert ann == {"name": "Foo", "gene": "fooA", "organism": "E. coli", "taxid": 562,
                   "entry_url": "https://alphafold.ebi.ac.uk/entry/Q9X"}
    assert entry_url("pdb", "5me2") == "https://www.rcsb.org/structure/5ME2"
    assert entry_url("local", None, "P69905") == "https://www.uniprot.org/uniprotkb/P69905/entry"
    assert entry_url("local", None, None) is None


def test_fitted_mmcif_header_names_the_candidate(tmp_path):
    atoms = read_structure(DEMO / "I7MLV6_D3.pdb")
    atoms.meta.update(parent="I7MLV6", residue_ranges="A:1-207")
    path = write_structure(atoms, tmp_path / "fitted.cif")
    back = read_structure(path)
    assert back.meta["name"] == PACRG and back.meta["organism"] == TETRAHYMENA
    assert back.meta["taxid"] == 312017 and back.meta["uniprot"] == "I7MLV6"
    assert "residues A:1-207 of I7MLV6" in back.meta["title"]


def test_names_from_the_afdb_api_and_rcsb_through_fetch_and_pack(fixture_http, client, tmp_path):
    """Fetched over HTTP from the fixture server: AFDB names from the prediction API (cached),
    RCSB names per chain from the entry's mmCIF; both carried into the library store."""
    spec = {"afdb": {"accessions": ["A0A1D1VEJ5", "A0A1D1W535"]},
            "pdb": {"entries": ["5ME2"], "unique_chains": True}}
    urls = lib.resolve_urls(spec, **fixture_http.urls())
    result = lib.fetch_library(spec, tmp_path / "cache", urls, client)
    assert not result.failures
    rows = {r["candidate"]: r for r in result.rows}
    assert rows["A0A1D1VEJ5"]["name"] == "60S ribosomal protein L38"
    assert rows["A0A1D1VEJ5"]["organism"] == "Ramazzottius varieornatus"
    assert rows["A0A1D1VEJ5"]["taxid"] == 947166
    assert rows["A0A1D1VEJ5"]["gene"] is None  # the fixture API answers carry no gene
    assert rows["5ME2_A"]["entry_url"] == "https://www.rcsb.org/structure/5ME2"
    manifest = tmp_path / "manifest.parquet"
    lib.write_fetch_outputs(result, manifest, tmp_path / "failures.parquet")
    shard = tmp_path / "shard.parquet"
    assert store.pack_library(read_table(manifest, lib.MANIFEST_SCHEMA), [shard]) == []
    index = {r["candidate"]: r for r in store.read_shard_index(shard).to_pylist()}
    assert index["A0A1D1VEJ5"]["name"] == "60S ribosomal protein L38"
    assert index["A0A1D1VEJ5"]["entry_url"] == "https://alphafold.ebi.ac.uk/entry/A0A1D1VEJ5"
    assert index["A0A1D1W535"]["name"] == "40S ribosomal protein S28"
    assert (index["5ME2_A"]["name"], index["5ME2_A"]["gene"], index["5ME2_A"]["organism"],
            index["5ME2_A"]["taxid"]) == ("HEMOGLOBIN SUBUNIT ALPHA", "HBA1, HBA2",
                                          "Homo sapiens", 9606)
    assert index["5ME2_B"]["name"] == "HEMOGLOBIN SUBUNIT BETA" and index["5ME2_B"]["gene"] == "HBB"
    fixture_http.reset()
    again = lib.fetch_library(spec, tmp_path / "cache", urls, client)
    assert fixture_http.count("/") == 0  # names come from the cached API answers
    assert {r["candidate"]: r.get("name") for r in again.rows} == {
        c: r.get("name") for c, r in rows.items()}


def test_local_alphafold_files_get_their_accession(tmp_path):
    """A local AlphaFold file's accession (the tables' ``accession``): from its header's title,
    through the library store too, else from an ``AF-<acc>-F1-model_v4`` file name."""
    rows = lib.local_rows([str(DEMO / "I7MLV6_D3.pdb")]).rows
    assert rows[0]["accession"] is None  # the manifest knows only the file
    shard = tmp_path / "local.parquet"
    assert store.pack_library(rows, [shard]) == []
    (packed,) = store.read_shard(shard)
    assert candidate_accession(packed.meta, packed.name) == "I7MLV6"
    atoms = read_structure(DEMO / "I7MLV6_D3.pdb")
    atoms.meta = {}
    bare = read_structure(write_structure(atoms, tmp_path / "AF-P69905-F1-model_v4.pdb"))
    assert "uniprot" not in bare.meta and candidate_accession(bare.meta, bare.name) == "P69905"
    assert candidate_accession({}, "my_model") is None
    assert candidate_accession({"accession": "5ME2_A", "uniprot": "P69905"}) == "5ME2_A"


def test_domains_keep_their_parents_names(tmp_path):
    rows = lib.local_rows([str(DEMO / "I7LV70_D1.pdb")]).rows
    shard = tmp_path / "domains.parquet"
    assert store.pack_library(rows, [shard], store.make_prepare("domains")) == []
    domains = store.read_shard(shard)
    assert domains
    for dom in domains:
        assert dom.meta["name"] == "MEIOSIS-SPECIFIC NUCLEAR STRUCTURAL PROTEIN 1"
        assert dom.meta["organism"] == TETRAHYMENA and dom.meta["taxid"] == 312017
        assert dom.meta["parent"] == "I7LV70_D1" and dom.meta["residue_ranges"]
        assert dom.meta["entry_url"] == "https://alphafold.ebi.ac.uk/entry/I7LV70"


def test_old_shards_without_name_columns_still_read(tmp_path):
    import pyarrow.parquet as pq

    shard = store.write_shard([read_structure(DEMO / "I7M317_D1.pdb")], tmp_path / "s.parquet")
    table = pq.read_table(shard)
    old = table.drop_columns(["name", "gene", "organism", "taxid", "entry_url"])
    pq.write_table(old, tmp_path / "old.parquet")
    (atoms,) = store.read_shard(tmp_path / "old.parquet")
    assert atoms.name == "I7M317_D1" and "name" not in atoms.meta
    assert atoms.meta["uniprot"] == "I7M317"  # the rest of the meta is still there
