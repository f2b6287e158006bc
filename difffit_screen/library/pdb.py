"""RCSB PDB entries, split into one candidate per (unique) polymer chain."""

from __future__ import annotations

import re

import gemmi

from ..annotations import RCSB_ENTRY
from .checks import parse_structure_file
from .context import FetchContext
from .http import FetchError

__all__ = ["fetch_pdb_entry", "polymer_chains"]


def polymer_chains(st: gemmi.Structure, unique: bool = False) -> list[str]:
    """Names of the chains of the first model that hold a polymer.

    With ``unique``, one chain per entity (or per sequence when the file has no entities).
    """
    st.setup_entities()
    seen: set[str] = set()
    names: list[str] = []
    for chain in st[0]:
        polymer = chain.get_polymer()
        if not len(polymer):
            continue
        entity = st.get_entity_of(polymer)
        key = entity.name if entity is not None else polymer.make_one_letter_sequence()
        if unique and key in seen:
            continue
        seen.add(key)
        names.append(chain.name)
    return names


def fetch_pdb_entry(entry_id: str, ctx: FetchContext, unique_chains: bool = False,
                    ) -> list[dict]:
    """Fetch one RCSB entry (``.cif.gz``); return one manifest row per (unique) polymer chain."""
    pdb_id = entry_id.strip().upper()
    if not re.fullmatch(r"[0-9][A-Z0-9]{3}|PDB_[0-9A-Z]{8}", pdb_id):
        raise FetchError(f"{entry_id!r} is not a PDB id")
    url = f"{ctx.urls['rcsb_files']}/download/{pdb_id}.cif.gz"
    dest = ctx.cache_file("pdb", f"{pdb_id}.cif.gz", what="PDB id")
    sha, n_bytes, _ = ctx.ensure(url, dest, parse_structure_file)
    chains = polymer_chains(parse_structure_file(dest), unique_chains)
    return [{"candidate": f"{pdb_id}_{ch}", "source_kind": "pdb", "accession": pdb_id,
             "version": None, "path": str(dest), "url": url, "sha256": sha, "pae_path": None,
             "chain": ch, "n_bytes": n_bytes, "entry_url": RCSB_ENTRY.format(pdb_id)}
            for ch in chains]
