"""ChimeraX scripts (``.cxc``) that open the map and the posed models, by relative paths.

A ``.cxc`` line is a ChimeraX command, and a command line can hold several commands separated
by ``;``; so no name (a candidate's, a file's) is ever written into a command. Models are
referred to by id (``#2``) and files by the safe names that the report gives them
(:func:`~difffit_screen.outputs.safe_name`): a path that holds anything but letters, digits,
``. _ - + /`` and spaces is not opened by the script but named in a comment. Names appear only
in ``#`` comments, with every character that is not printable (newlines, other line breaks,
control characters) written as an escape (:func:`cxc_comment`), so that a comment cannot end
its line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..outputs import escape_line, write_text
from .export import HitExport

__all__ = ["CXC_NAME", "cxc_comment", "cxc_path", "cxc_quote", "hit_lines", "map_lines",
           "rel_path", "write_cxc"]

CXC_NAME = "top_hits.cxc"
"""The report's ChimeraX script."""

SAFE_CXC_PATH = re.compile(r"[A-Za-z0-9._+/-][A-Za-z0-9._+/ -]*")
"""Paths written into a ChimeraX command (no quotes, ``;``, ``#``, control characters)."""


def rel_path(target: Path, start: Path) -> str:
    """``target`` relative to ``start``, with forward slashes."""
    return Path(os.path.relpath(target, start)).as_posix()


def cxc_path(path: str) -> str | None:
    """``path`` as a ChimeraX command argument (quoted when it holds spaces), or None when it
    holds characters that a command cannot safely hold (see :data:`SAFE_CXC_PATH`)."""
    if not SAFE_CXC_PATH.fullmatch(path) or path != path.strip():
        return None
    return f'"{path}"' if " " in path else path


def cxc_quote(text: str) -> str:
    """Quote a ChimeraX command argument when it holds spaces.

    Raises
    ------
    ValueError
        ``text`` holds characters that a command cannot safely hold (:func:`cxc_path`).
    """
    quoted = cxc_path(text)
    if quoted is None:
        raise ValueError(f"{text!r} cannot be written into a ChimeraX command")
    return quoted


def cxc_comment(text: str) -> str:
    """``text`` for a ``#`` comment, kept on its line (:func:`~difffit_screen.outputs.escape_line`:
    line breaks and control characters escaped)."""
    return escape_line(text)


def write_cxc(path: Path, exports: list[HitExport], map_file: Path | None,
              threshold: float | None, resolution: float | None = None) -> Path:
    """Write a ChimeraX script opening the map (``#1``) and the exported top hits (``#2`` ...).

    Paths are relative to the script's folder (ChimeraX runs a ``.cxc`` from its own folder),
    so the report folder can be copied elsewhere. Each model gets its rank colour; commented
    ``fitmap`` lines refine a hit locally in the map. Names are only in comments (see the
    module docstring).
    """
    lines = ["# ChimeraX script written by difffit-screen report: the map and the top hits,",
             f"# coloured by rank. Open with: chimerax {CXC_NAME}  (or 'open {CXC_NAME}').",
             "close session"]
    map_lines_ = map_lines(map_file, path.parent, threshold) if map_file is not None else []
    with_map = any(not line.startswith("#") for line in map_lines_)
    lines += map_lines_
    lines += hit_lines(exports, path.parent, 2 if with_map else 1, with_map, resolution)
    lines += ["cartoon", "view"]
    return write_text(path, "\n".join(lines) + "\n")


def map_lines(map_file: Path, folder: Path, threshold: float | None,
              transparency: float = 0.5) -> list[str]:
    """The ``.cxc`` lines opening ``map_file`` (relative to ``folder``, the script's) as model
    ``#1`` and contouring it at ``threshold`` (when given) as a transparent surface; a comment
    alone when its path cannot be written into a command."""
    rel = rel_path(map_file, folder)
    arg = cxc_path(rel)
    if arg is None:
        return [f"# the map {cxc_comment(rel)} is not opened: its name holds characters that "
                "a ChimeraX command cannot safely hold; open it by hand"]
    lines = [f"open {arg}"]
    if threshold is not None:
        lines.append(f"volume #1 level {threshold:.6g} style surface transparency {transparency:g}")
    return lines


def hit_lines(exports: list[HitExport], folder: Path, first_model: int, with_map: bool,
              resolution: float | None) -> list[str]:
    """The ``.cxc`` lines opening, naming and colouring each exported hit (model ids from
    ``first_model``); a comment for each hit not exported.

    A model is named by its file's stem (``rank<r>_<safe name>``), the candidate's own name
    is in the comment line above it.
    """
    lines = []
    model_id = first_model
    res = f" resolution {resolution:g}" if resolution else ""
    for hit in exports:
        rank = int(hit.row["rank"])
        about = f"# rank {rank} {cxc_comment(hit.row['candidate'])}"
        arg = None if hit.model_path is None else cxc_path(rel_path(hit.model_path, folder))
        if arg is None:
            why = hit.error if hit.model_path is None else "its file name is not safe"
            lines.append(f"{about}: not exported ({cxc_comment(why)})")
            continue
        label = cxc_path(Path(hit.model_path).stem) or f"rank{rank}"
        colour = hit.colour if re.fullmatch(r"[a-z]+", hit.colour) else "gray"
        lines += [f"{about}: model #{model_id}",
                  f"open {arg}",
                  f"rename #{model_id} {label}",
                  f"color #{model_id} {colour}"]
        if with_map:
            lines.append(f"# fitmap #{model_id} inMap #1{res}   (local refinement of rank {rank})")
        model_id += 1
    return lines
