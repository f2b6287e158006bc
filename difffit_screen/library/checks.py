"""Checks of downloaded files before they are renamed into the cache: structures (gemmi),
JSON, maps (MRC/CCP4 header against size) and tar archives."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path

import gemmi

from ..errors import InputError
from ..structures import atoms_from_gemmi, candidate_name
from .http import error_line

__all__ = ["check_json_file", "check_map_file", "check_tar_file", "parse_structure_file"]


def parse_structure_file(path: str | os.PathLike) -> gemmi.Structure:
    """Parse a PDB/mmCIF file (gzipped or not, whatever its name) and check it has atoms.

    Raises
    ------
    InputError
        If the file cannot be parsed or holds no polymer atoms.
    """
    data = Path(path).read_bytes()
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        st = gemmi.read_structure_string(data)
    except Exception as exc:  # gzip/gemmi raise EOFError, OSError, RuntimeError, ValueError
        raise InputError(f"cannot parse structure ({error_line(exc)})") from None
    if len(atoms_from_gemmi(st, candidate_name(path))) == 0:
        raise InputError("unparsable structure: no atoms")
    return st


def check_json_file(path: str | os.PathLike) -> None:
    """Raise ``ValueError`` unless ``path`` holds JSON."""
    json.loads(Path(path).read_bytes())


def check_map_file(path: str | os.PathLike) -> None:
    """Raise ``InputError`` unless ``path`` is an MRC/CCP4 map (``.gz`` too) with all its data."""
    import mrcfile

    try:
        with mrcfile.open(str(path), permissive=True) as m:
            if m.data is None:
                raise InputError("map has no data (truncated?)")
            h = m.header
            expected = int(h.nx) * int(h.ny) * int(h.nz)
            if m.data.size != expected:
                raise InputError(f"map holds {m.data.size} of {expected} voxels (truncated?)")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read map ({error_line(exc)})") from None


def check_tar_file(path: str | os.PathLike) -> None:
    """Raise ``ValueError`` unless ``path`` is a readable tar archive."""
    if not tarfile.is_tarfile(path):
        raise ValueError("not a tar archive")
