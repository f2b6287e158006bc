"""One name de-duplication (:func:`difffit_screen.outputs.unique_names`) for the library
manifest and the fit's candidates: a generated ``<name>_2`` never collides with a given one."""

from __future__ import annotations

import shutil
from pathlib import Path

from difffit_screen import library as lib
from difffit_screen.fit import FitParams, iter_candidates
from difffit_screen.outputs import UniqueNames, unique_names

MODEL = Path(__file__).parent / "data" / "demo_library" / "I7M317_D1.pdb"


def test_unique_names_never_collide():
    assert unique_names(["a", "a", "a_2", "b"]) == ["a", "a_2", "a_2_2", "b"]
    assert unique_names(["a", "a_2", "a"]) == ["a", "a_2", "a_3"]
    assert unique_names(["a_2", "a", "a", "a"]) == ["a_2", "a", "a_3", "a_4"]
    assert unique_names(["x", "y"]) == ["x", "y"]
    names = UniqueNames()
    assert [names(n) for n in ["a", "a", "a_2"]] == ["a", "a_2", "a_2_2"]


def collide(tmp_path: Path) -> list[Path]:
    """Three files named ``a``, ``a`` and ``a_2``: the second ``a`` would become ``a_2``."""
    files = [tmp_path / "one" / "a.pdb", tmp_path / "two" / "a.pdb", tmp_path / "three" / "a_2.pdb"]
    for f in files:
        f.parent.mkdir()
        shutil.copy(MODEL, f)
    return files


def test_library_manifest_names_are_distinct(tmp_path):
    files = collide(tmp_path)
    result = lib.fetch_library({"local": [str(f) for f in files]}, tmp_path / "cache")
    names = [r["candidate"] for r in result.rows]
    assert names == ["a", "a_2", "a_2_2"]
    assert [Path(r["path"]) for r in result.rows] == [f.resolve() for f in files]


def test_fit_candidate_names_are_distinct(tmp_path):
    files = collide(tmp_path)
    yielded = list(iter_candidates([str(f) for f in files], FitParams()))
    names = [name for name, _, _ in yielded]
    assert names == ["a", "a_2", "a_2_2"]
    assert [atoms.name for _, _, atoms in yielded] == names
    assert [Path(source) for _, source, _ in yielded] == files
