"""Rebuild the service fixtures under ``tests/data/services/`` from ``/work/shared/data``.

Run once by hand (``python tests/data/services/build_fixtures.py [SHARED_DATA]``); the outputs
are committed. See ``PROVENANCE.md`` for what each file is.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import gemmi
import numpy as np

HERE = Path(__file__).parent
AFDB_FILES = "https://alphafold.ebi.ac.uk/files"
VERSION = 6
PROTEOME = "UP000186922"  # Ramazzottius varieornatus reference proteome
SERVED = {  # accession -> (mean pLDDT, description) from the library's INDEX.tsv
    "A0A1D1W535": (90.1, "40S ribosomal protein S28"),
    "A0A1D1WBC0": (62.1, "Uncharacterized protein"),
    "A0A1D1VEJ5": (85.1, "60S ribosomal protein L38"),
    "A0A1D1VL39": (93.1, "40S ribosomal protein S21"),
}
WITH_PAE = ("A0A1D1W535", "A0A1D1VEJ5")
NOT_SERVED = "A0A1D1VPF5"  # in the proteome list, absent from the fixture AFDB: a 404
EMDB_ID = 99999  # placeholder id (no such EMDB entry)


def gz(data: bytes) -> bytes:
    """Deterministic gzip (mtime 0)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def write(rel: str, data: bytes) -> None:
    path = HERE / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def prediction_entry(acc: str, st: gemmi.Structure) -> dict:
    """One AFDB prediction-API entry in the v6 answer's format."""
    seq = gemmi.one_letter_code([r.name for r in st[0][0]])
    entry = f"AF-{acc}-F1"
    files = f"{AFDB_FILES}/{entry}"
    plddt, description = SERVED[acc]
    return {
        "toolUsed": "AlphaFold Monomer v2.0 pipeline",
        "entityType": "protein",
        "isUniProt": True,
        "modelEntityId": entry,
        "modelCreatedDate": "2022-06-01T00:00:00Z",
        "globalMetricValue": plddt,
        "latestVersion": VERSION,
        "allVersions": list(range(1, VERSION + 1)),
        "isReviewed": False,
        "isReferenceProteome": True,
        "entryId": entry,
        "uniprotAccession": acc,
        "uniprotDescription": description,
        "taxId": 947166,
        "organismScientificName": "Ramazzottius varieornatus",
        "sequence": seq,
        "sequenceStart": 1,
        "sequenceEnd": len(seq),
        "uniprotSequence": seq,
        "uniprotStart": 1,
        "uniprotEnd": len(seq),
        "bcifUrl": f"{files}-model_v{VERSION}.bcif",
        "cifUrl": f"{files}-model_v{VERSION}.cif",
        "pdbUrl": f"{files}-model_v{VERSION}.pdb",
        "paeImageUrl": f"{files}-predicted_aligned_error_v{VERSION}.png",
        "paeDocUrl": f"{files}-predicted_aligned_error_v{VERSION}.json",
        "plddtDocUrl": f"{files}-confidence_v{VERSION}.json",
        "msaUrl": f"{AFDB_FILES}/msa/{entry}-msa_v{VERSION}.a3m",
    }


def synthetic_pae(st: gemmi.Structure) -> list:
    """PAE-shaped matrix from CA distances (synthetic: 0.1 * distance + 1, capped at 31.75)."""
    ca = np.array([r["CA"][0].pos.tolist() for r in st[0][0]])
    d = np.linalg.norm(ca[:, None] - ca[None], axis=-1)
    pae = np.minimum(0.1 * d + 1.0, 31.75)
    return [{"predicted_aligned_error": np.round(pae, 2).tolist(),
             "max_predicted_aligned_error": 31.75}]


def build_afdb(shared: Path) -> None:
    for acc in SERVED:
        raw = gzip.decompress((shared / "library_tardigrade_afdb" / f"{acc}.pdb.gz").read_bytes())
        st = gemmi.read_structure_string(raw)
        st.name = f"AF-{acc}-F1"
        stem = f"afdb/files/AF-{acc}-F1"
        write(f"{stem}-model_v{VERSION}.pdb.gz", gz(raw))
        write(f"{stem}-model_v{VERSION}.cif.gz",
              gz(st.make_mmcif_document().as_string().encode()))
        write(f"afdb/api/prediction/{acc}.json",
              json.dumps([prediction_entry(acc, st)], indent=1).encode())
        if acc in WITH_PAE:
            write(f"{stem}-predicted_aligned_error_v{VERSION}.json.gz",
                  gz(json.dumps(synthetic_pae(st), separators=(",", ":")).encode()))
    listing = "".join(f"{acc}\n" for acc in [*SERVED, NOT_SERVED])
    write(f"uniprot/uniprotkb/stream/{PROTEOME}.list", listing.encode())


BULK_ARCHIVE = f"afdb/bulk/{PROTEOME}_947166_RAMVA_v{VERSION}.tar"


def build_afdb_bulk() -> None:
    """A small per-proteome archive in AFDB's bulk layout (gzipped mmCIF members): three of the
    served models, a second fragment (F2, a copy of A0A1D1VEJ5's model), a corrupt member and
    a member that is not a model. Deterministic (sorted, mtime 0)."""
    import io
    import tarfile

    members = {f"AF-{acc}-F1-model_v{VERSION}.cif.gz":
               (HERE / f"afdb/files/AF-{acc}-F1-model_v{VERSION}.cif.gz").read_bytes()
               for acc in list(SERVED)[:3]}
    members[f"AF-A0A1D1VEJ5-F2-model_v{VERSION}.cif.gz"] = (
        HERE / f"afdb/files/AF-A0A1D1VEJ5-F1-model_v{VERSION}.cif.gz").read_bytes()
    members[f"AF-A0A1D1ZZZ9-F1-model_v{VERSION}.cif.gz"] = gz(b"data_broken\nnot an mmCIF\n")
    members["README.txt"] = b"AlphaFold DB bulk archive fixture (difffit_screen tests)\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(members[name]), 0, 0o644
            tf.addfile(info, io.BytesIO(members[name]))
    write(BULK_ARCHIVE, buf.getvalue())


def build_rcsb(shared: Path) -> None:
    st = gemmi.read_structure(str(shared / "emd3488_haemoglobin" / "5me2.pdb"))
    st.name = "5ME2"
    st.setup_entities()
    doc = st.make_mmcif_document()
    add_rcsb_entity_names(doc.sole_block())
    write("rcsb/download/5ME2.cif.gz", gz(doc.as_string().encode()))


RCSB_ENTITIES = {  # entity -> (description, gene): 5me2.pdb COMPND MOLECULE / SOURCE GENE
    "A": ("HEMOGLOBIN SUBUNIT ALPHA", "HBA1, HBA2"),
    "B": ("HEMOGLOBIN SUBUNIT BETA", "HBB"),
}


def add_rcsb_entity_names(block: gemmi.cif.Block) -> None:
    """``_entity.pdbx_description`` and ``_entity_src_gen`` (organism, taxon, gene), as the RCSB
    mmCIF carries them, with the values of 5me2.pdb's COMPND and SOURCE records (gemmi does not
    convert those)."""
    table = block.find_mmcif_category("_entity.")
    ids = [row.str(0) for row in table]
    types = [row.str(1) for row in table]
    block.set_mmcif_category("_entity.", {
        "id": ids, "type": types,
        "pdbx_description": [RCSB_ENTITIES[i][0] if i in RCSB_ENTITIES
                             else "PROTOPORPHYRIN IX CONTAINING FE" for i in ids]})
    polymer = [i for i in ids if i in RCSB_ENTITIES]
    block.set_mmcif_category("_entity_src_gen.", {
        "entity_id": polymer,
        "pdbx_gene_src_gene": [RCSB_ENTITIES[i][1] for i in polymer],
        "pdbx_gene_src_scientific_name": ["Homo sapiens"] * len(polymer),
        "pdbx_gene_src_ncbi_taxonomy_id": ["9606"] * len(polymer)})


def build_emdb(shared: Path) -> None:
    number = EMDB_ID
    raw = (shared / "domainfit_demo" / "density2.mrc").read_bytes()
    write(f"emdb/files/structures/EMD-{number}/map/emd_{number}.map.gz", gz(raw))
    entry = {
        "emdb_id": f"EMD-{number}",
        "version": "3.0.10.0",
        "admin": {"status_history_list": {}, "current_status": {"code": {"valueOf_": "REL"}},
                  "title": "Fixture: density segment from the DomainFit demo"},
        "map": {
            "format": "CCP4", "size_kbytes": 251, "file": f"emd_{number}.map.gz",
            "data_type": "IMAGE STORED AS FLOATING POINT NUMBER (4 BYTES)",
            "dimensions": {"col": 40, "row": 34, "sec": 47},
            "pixel_spacing": {"x": {"valueOf_": 1.3701, "units": "Å"},
                              "y": {"valueOf_": 1.3701, "units": "Å"},
                              "z": {"valueOf_": 1.3701, "units": "Å"}},
            "contour_list": {"contour": [
                {"primary": False, "level": 0.5, "source": "EMDB"},
                {"primary": True, "level": 0.886, "source": "AUTHOR"},
            ]},
        },
        "structure_determination_list": {"structure_determination": [{
            "method": "subtomogramAveraging",
            "aggregation_state": "FILAMENT",
            "image_processing": [{
                "final_reconstruction": {
                    "resolution": {"valueOf_": "4.0", "units": "Å", "res_type": "BY AUTHOR"},
                    "resolution_method": "FSC 0.143 CUT-OFF",
                },
            }],
        }]},
        "crossreferences": {"pdb_list": {"pdb_reference": []}},
    }
    write(f"emdb/api/entry/EMD-{number}.json", json.dumps(entry, indent=1).encode())


def main(shared: Path) -> None:
    build_afdb(shared)
    build_afdb_bulk()
    build_rcsb(shared)
    build_emdb(shared)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/data"))
