"""Names and links of candidates: what a biologist reads first.

Every candidate can carry an *annotation*: ``name`` (the protein's description), ``gene``,
``organism``, ``taxid`` (NCBI taxonomy id) and ``entry_url`` (its AlphaFold DB, UniProt or RCSB
page), plus the ``uniprot`` accession when a file names one. Annotations come from

- the AlphaFold DB prediction API answer (:func:`annotation_from_prediction`:
  ``uniprotDescription``, ``gene``, ``organismScientificName``, ``taxId``), cached by the fetch
  step;
- the structure file's own header (:func:`read_header_annotations`), per chain:

  - PDB: ``TITLE`` (AlphaFold: ``... PREDICTION FOR <NAME> (<ACC>)``), ``COMPND MOLECULE:`` /
    ``CHAIN:``, ``SOURCE ORGANISM_SCIENTIFIC:`` / ``ORGANISM_TAXID:`` / ``GENE:``, ``DBREF`` (UNP);
  - mmCIF: ``_struct.title``, ``_entity.pdbx_description``, ``_entity_poly.pdbx_strand_id``,
    ``_entity_src_gen`` / ``_entity_src_nat`` / ``_pdbx_entity_src_syn``,
    ``_ma_target_ref_db_details`` (ModelCIF: AlphaFold DB files) and ``_struct_ref`` (UNP).

Files without any of these keep nulls. Text is kept as the source writes it (AlphaFold PDB headers
are upper case); searches in the report ignore case.
"""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

ANNOTATION_KEYS = ("name", "gene", "organism", "taxid", "entry_url")
"""Keys of an annotation carried from the library store into the result tables (``entry_url``
becomes the tables' ``url`` column)."""

AFDB_ENTRY = "https://alphafold.ebi.ac.uk/entry/{}"
UNIPROT_ENTRY = "https://www.uniprot.org/uniprotkb/{}/entry"
RCSB_ENTRY = "https://www.rcsb.org/structure/{}"

_AF_TITLE = re.compile(r"PREDICTION\s+FOR\s+(?P<name>.+?)\s*\((?P<acc>[A-Z0-9_-]+)\)\s*$",
                       re.IGNORECASE)
_PREDICTED = re.compile(r"alphafold|colabfold|esmfold", re.IGNORECASE)
_UNIPROT = re.compile(r"[OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9](?:[A-Z][A-Z0-9]{2}[0-9]){1,2}")


def empty_annotation() -> dict:
    """An annotation with every key null."""
    return dict.fromkeys(ANNOTATION_KEYS)


def parse_taxid(value) -> int | None:
    """An NCBI taxonomy id as int (the first one of ``'9606, 10090'``), or None."""
    if value is None:
        return None
    match = re.search(r"\d+", str(value))
    return int(match.group()) if match else None


def clean_text(value) -> str | None:
    """Strip a header value; None for empty, ``?`` and ``.`` (mmCIF nulls)."""
    if value is None:
        return None
    text = " ".join(str(value).replace("\n", " ").split()).strip().strip("'\"")
    return text if text and text not in ("?", ".") else None


def entry_url(source_kind: str | None, accession: str | None, uniprot: str | None = None,
              predicted: bool = False) -> str | None:
    """The page of a candidate: AlphaFold DB entry, RCSB structure or UniProt entry.

    AlphaFold DB models (``source_kind='afdb'``, or a predicted local file with a UniProt
    accession) link to the AFDB entry, PDB chains to RCSB, other files naming a UniProt accession
    to UniProt; None when nothing is known.
    """
    if source_kind == "afdb" and accession:
        return AFDB_ENTRY.format(accession)
    if source_kind == "pdb" and accession:
        return RCSB_ENTRY.format(accession.upper())
    if uniprot:
        return (AFDB_ENTRY if predicted else UNIPROT_ENTRY).format(uniprot)
    return None


def annotation_from_prediction(entry: dict) -> dict:
    """Annotation of an AlphaFold DB prediction API entry (one element of its JSON list)."""
    acc = entry.get("uniprotAccession")
    return {"name": clean_text(entry.get("uniprotDescription")),
            "gene": clean_text(entry.get("gene")),
            "organism": clean_text(entry.get("organismScientificName")),
            "taxid": parse_taxid(entry.get("taxId")),
            "entry_url": AFDB_ENTRY.format(acc) if acc else None}


# --- structure file headers ---------------------------------------------------------------------

def is_mmcif_path(path: str | os.PathLike) -> bool:
    """True for ``.cif``/``.mmcif`` names (``.gz`` too)."""
    name = str(path).lower().removesuffix(".gz")
    return name.endswith((".cif", ".mmcif"))


def read_header_annotations(path: str | os.PathLike, block=None) -> dict[str, dict]:
    """Per-chain annotations from a structure file's header.

    Parameters
    ----------
    path : path
        PDB or mmCIF file (``.gz`` too).
    block : gemmi.cif.Block, optional
        The file's parsed mmCIF block, when the caller already has it (no second parse).

    Returns
    -------
    dict
        ``{chain: annotation}`` (author chain names) and ``""``: the file's default (its first
        polymer entity). Annotations hold :data:`ANNOTATION_KEYS` minus ``entry_url``, plus
        ``uniprot`` (accession), ``title`` and ``predicted`` (bool: the title reads
        ``<AlphaFold|ColabFold|ESMFold ...> PREDICTION FOR <NAME> (<ACC>)`` or the mmCIF has
        ModelCIF ``_ma_qa_metric``). Empty when the header names nothing.
    """
    if block is not None or is_mmcif_path(path):
        if block is None:
            import gemmi

            block = gemmi.cif.read(str(path)).sole_block()
        return mmcif_annotations(block)
    return pdb_header_annotations(read_pdb_header(path))


def read_pdb_header(path: str | os.PathLike, max_lines: int = 20000) -> list[str]:
    """The header records of a PDB file (lines before the first coordinate record)."""
    opener = gzip.open if Path(path).read_bytes()[:2] == b"\x1f\x8b" else open
    lines = []
    with opener(path, "rt", errors="replace") as fh:
        for i, line in enumerate(fh):
            if line.startswith(("ATOM  ", "HETATM", "MODEL ")) or i >= max_lines:
                break
            lines.append(line.rstrip("\n"))
    return lines


def _specification_records(lines: list[str], record: str) -> list[dict[str, str]]:
    """``COMPND``/``SOURCE`` text split into one dict per ``MOL_ID``."""
    text = " ".join(ln[10:80].strip() for ln in lines if ln.startswith(record))
    groups: list[dict[str, str]] = []
    for token in text.split(";"):
        key, sep, value = token.partition(":")
        if not sep:
            if groups and token.strip():  # a value that held ';' or a wrapped line
                last = list(groups[-1])[-1]
                groups[-1][last] += " " + token.strip()
            continue
        key = key.strip().upper()
        if key == "MOL_ID" or not groups:
            groups.append({})
        groups[-1][key] = value.strip()
    return groups


def pdb_header_annotations(lines: list[str]) -> dict[str, dict]:
    """Per-chain annotations from PDB header records (see :func:`read_header_annotations`)."""
    title = clean_text(" ".join(ln[10:80].strip() for ln in lines if ln.startswith("TITLE")))
    af = _AF_TITLE.search(title) if title else None
    predicted = bool(af and _PREDICTED.search(title))  # "<predictor> ... PREDICTION FOR X (ACC)"
    uniprot_by_chain = {}
    for ln in lines:
        fields = ln.split()
        if ln.startswith("DBREF ") and len(fields) >= 7 and fields[5] in ("UNP", "SWS", "TREMBL"):
            uniprot_by_chain.setdefault(ln[12].strip(), fields[6])
    sources = {g.get("MOL_ID", str(i)): g
               for i, g in enumerate(_specification_records(lines, "SOURCE"), start=1)}
    out: dict[str, dict] = {}
    for i, comp in enumerate(_specification_records(lines, "COMPND"), start=1):
        src = sources.get(comp.get("MOL_ID", str(i)), {})
        chains = [c.strip() for c in comp.get("CHAIN", "").split(",") if c.strip()]
        ann = {"name": clean_text(comp.get("MOLECULE")),
               "gene": clean_text(src.get("GENE")),
               "organism": clean_text(src.get("ORGANISM_SCIENTIFIC")),
               "taxid": parse_taxid(src.get("ORGANISM_TAXID")),
               "uniprot": None, "title": title, "predicted": predicted}
        for ch in chains or [""]:
            out[ch] = {**ann, "uniprot": uniprot_by_chain.get(ch)}
        out.setdefault("", dict(out[chains[0] if chains else ""]))
    if af is not None:
        default = out.setdefault("", {"name": None, "gene": None, "organism": None,
                                      "taxid": None, "uniprot": None, "title": title,
                                      "predicted": predicted})
        default["name"] = default["name"] or clean_text(af.group("name"))
        if _UNIPROT.fullmatch(af.group("acc")):
            default["uniprot"] = af.group("acc")
        for ann in out.values():
            ann["uniprot"] = ann["uniprot"] or default["uniprot"]
    elif title and not out:
        out[""] = {"name": None, "gene": None, "organism": None, "taxid": None,
                   "uniprot": None, "title": title, "predicted": predicted}
    return out


def _loop_rows(block, prefix: str, tags: list[str]) -> list[dict[str, str | None]]:
    """Rows of mmCIF category ``prefix`` (``_entity.``) as dicts (absent tags give None)."""
    table = block.find_mmcif_category(prefix)
    if len(table) == 0:
        return []
    names = [t[len(prefix):].lower() for t in table.tags]
    index = {t: names.index(t) for t in tags if t in names}
    return [{t: clean_text(row.str(index[t])) if t in index else None for t in tags}
            for row in table]


def mmcif_annotations(block) -> dict[str, dict]:
    """Per-chain annotations of an mmCIF block (see :func:`read_header_annotations`)."""
    title = clean_text(block.find_value("_struct.title"))
    predicted = bool(title and _AF_TITLE.search(title) and _PREDICTED.search(title)) or bool(
        block.find_loop("_ma_qa_metric.id") or block.find_value("_ma_qa_metric.id"))
    entities: dict[str, dict] = {}
    for row in _loop_rows(block, "_entity.", ["id", "type", "pdbx_description"]):
        if row.get("type") in (None, "polymer"):
            entities[row["id"]] = {"name": row.get("pdbx_description"), "gene": None,
                                   "organism": None, "taxid": None, "uniprot": None}
    sources = (
        ("_entity_src_gen.", "entity_id", "pdbx_gene_src_scientific_name",
         "pdbx_gene_src_ncbi_taxonomy_id", "pdbx_gene_src_gene"),
        ("_entity_src_nat.", "entity_id", "pdbx_organism_scientific", "pdbx_ncbi_taxonomy_id",
         None),
        ("_pdbx_entity_src_syn.", "entity_id", "organism_scientific", "ncbi_taxonomy_id", None),
        ("_ma_target_ref_db_details.", "target_entity_id", "organism_scientific",
         "ncbi_taxonomy_id", "gene_name"),
    )
    for prefix, key, org, tax, gene in sources:
        tags = [key, org, tax] + ([gene] if gene else [])
        for row in _loop_rows(block, prefix, tags):
            ent = entities.setdefault(row.get(key) or "1", {"name": None, "gene": None,
                                                           "organism": None, "taxid": None,
                                                           "uniprot": None})
            ent["organism"] = ent["organism"] or row.get(org)
            ent["taxid"] = ent["taxid"] or parse_taxid(row.get(tax))
            if gene:
                ent["gene"] = ent["gene"] or row.get(gene)
    for prefix, key, db, acc in (("_ma_target_ref_db_details.", "target_entity_id", "db_name",
                                  "db_accession"),
                                 ("_struct_ref.", "entity_id", "db_name", "pdbx_db_accession")):
        for row in _loop_rows(block, prefix, [key, db, acc]):
            ent = entities.get(row.get(key) or "1")
            if ent is not None and (row.get(db) or "").upper() in ("UNP", "UNIPROT"):
                ent["uniprot"] = ent["uniprot"] or row.get(acc)
    af = _AF_TITLE.search(title) if title else None
    chains: dict[str, str] = {}
    for row in _loop_rows(block, "_entity_poly.", ["entity_id", "pdbx_strand_id"]):
        for ch in (row.get("pdbx_strand_id") or "").split(","):
            if ch.strip():
                chains.setdefault(ch.strip(), row.get("entity_id"))
    out: dict[str, dict] = {}
    for ch, ent_id in chains.items():
        if ent_id in entities:
            out[ch] = {**entities[ent_id], "title": title, "predicted": predicted}
    first = next(iter(entities.values()), None)
    if first is not None or title:
        default = dict(first or {"name": None, "gene": None, "organism": None, "taxid": None,
                                 "uniprot": None})
        if af is not None:
            default["name"] = default["name"] or clean_text(af.group("name"))
            if _UNIPROT.fullmatch(af.group("acc")):
                default["uniprot"] = af.group("acc")
        out[""] = {**default, "title": title, "predicted": predicted}
    return out


def chain_annotation(annotations: dict[str, dict], chain: str | None = None) -> dict:
    """The annotation of ``chain`` (else the file's default) as meta keys; {} when none."""
    ann = annotations.get(chain or "") if chain else None
    ann = ann or annotations.get("") or {}
    return {k: v for k, v in ann.items() if v is not None and v is not False}


def meta_annotation(meta: dict, source_kind: str | None = None) -> dict:
    """The :data:`ANNOTATION_KEYS` of a candidate's ``meta``, with ``entry_url`` filled in from
    its accession or UniProt accession when missing."""
    out = {k: meta.get(k) for k in ANNOTATION_KEYS}
    out["taxid"] = parse_taxid(out["taxid"])
    if not out["entry_url"]:
        out["entry_url"] = entry_url(source_kind or meta.get("source_kind"),
                                     meta.get("accession"), meta.get("uniprot"),
                                     bool(meta.get("predicted")))
    return out


_AF_FILE = re.compile(r"^AF-(?P<acc>[A-Za-z0-9]+)-F\d+-model(?:_v\d+)?")


def candidate_accession(meta: dict, name: str | None = None) -> str | None:
    """A candidate's database accession: the fetched one (AlphaFold DB, PDB), else the UniProt
    accession its header names (AlphaFold title ``... (<ACC>)``, ``DBREF`` UNP, mmCIF
    ``_struct_ref``), else that of an AlphaFold DB file name ``AF-<ACC>-F1-model_v4``; None."""
    if meta.get("accession"):
        return str(meta["accession"])
    if meta.get("uniprot"):
        return str(meta["uniprot"])
    m = _AF_FILE.match(str(name or ""))
    return m.group("acc") if m else None


def row_annotation(meta: dict) -> dict:
    """The result tables' annotation columns (``name``, ``gene``, ``organism``, ``taxid``,
    ``url``) of a candidate's ``meta``."""
    ann = meta_annotation(meta or {})
    return {"name": ann["name"], "gene": ann["gene"], "organism": ann["organism"],
            "taxid": ann["taxid"], "url": ann["entry_url"]}
