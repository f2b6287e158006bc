"""ChimeraX scripts (``.cxc``) that open the map and the posed models, by relative paths."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..outputs import write_text
from .export import HitExport

__all__ = ["CXC_NAME", "cxc_quote", "hit_lines", "map_lines", "rel_path", "write_cxc"]

CXC_NAME = "top_hits.cxc"
"""The report's ChimeraX script."""


def rel_path(target: Path, start: Path) -> str:
    """``target`` relative to ``start``, with forward slashes."""
    return Path(os.path.relpath(target, start)).as_posix()


def cxc_quote(text: str) -> str:
    """Quote a ChimeraX command argument when it holds spaces."""
    return f'"{text}"' if re.search(r"\s", text) else text


def write_cxc(path: Path, exports: list[HitExport], map_file: Path | None,
              threshold: float | None, resolution: float | None = None) -> Path:
    """Write a ChimeraX script opening the map (``#1``) and the exported top hits (``#2`` ...).

    Paths are relative to the script's folder (ChimeraX runs a ``.cxc`` from its own folder),
    so the report folder can be copied elsewhere. Each model gets its rank colour; commented
    ``fitmap`` lines refine a hit locally in the map.
    """
    lines = ["# ChimeraX script written by difffit-screen report: the map and the top hits,",
             f"# coloured by rank. Open with: chimerax {CXC_NAME}  (or 'open {CXC_NAME}').",
             "close session"]
    first_model = 1
    if map_file is not None:
        lines += map_lines(map_file, path.parent, threshold)
        first_model = 2
    lines += hit_lines(exports, path.parent, first_model, map_file is not None, resolution)
    lines += ["cartoon", "view"]
    return write_text(path, "\n".join(lines) + "\n")


def map_lines(map_file: Path, folder: Path, threshold: float | None,
              transparency: float = 0.5) -> list[str]:
    """The ``.cxc`` lines opening ``map_file`` (relative to ``folder``, the script's) as model
    ``#1`` and contouring it at ``threshold`` (when given) as a transparent surface."""
    lines = [f"open {cxc_quote(rel_path(map_file, folder))}"]
    if threshold is not None:
        lines.append(f"volume #1 level {threshold:.6g} style surface transparency {transparency:g}")
    return lines


def hit_lines(exports: list[HitExport], folder: Path, first_model: int, with_map: bool,
              resolution: float | None) -> list[str]:
    """The ``.cxc`` lines opening, naming and colouring each exported hit (model ids from
    ``first_model``); a comment for each hit not exported."""
    lines = []
    model_id = first_model
    res = f" resolution {resolution:g}" if resolution else ""
    for hit in exports:
        if hit.model_path is None:
            lines.append(f"# rank {hit.row['rank']} {hit.row['candidate']}: not exported "
                         f"({hit.error})")
            continue
        label = cxc_quote(f"rank{hit.row['rank']}_{hit.row['candidate']}")
        lines += [f"open {cxc_quote(rel_path(hit.model_path, folder))}",
                  f"rename #{model_id} {label}",
                  f"color #{model_id} {hit.colour}"]
        if with_map:
            lines.append(f"# fitmap #{model_id} inMap #1{res}   "
                         f"(local refinement of rank {hit.row['rank']})")
        model_id += 1
    return lines
