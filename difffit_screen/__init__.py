"""difffit_screen: batched differentiable rigid-body fitting of atomic structures into cryo-EM maps.

Conventions (stated once here and kept everywhere in the package)
-----------------------------------------------------------------
- Lengths are in Å; angles in degrees in tables and options, radians inside the maths.
- Map arrays are indexed ``[z, y, x]`` (shape ``(nz, ny, nx)``), whatever the file's axis order.
- Coordinates are ``[x, y, z]`` in Å in the map's world frame: voxel ``[k, j, i]`` lies at
  ``origin + (i, j, k) * voxel_size`` (``origin`` and ``voxel_size`` are ``[x, y, z]``), with
  ``origin`` read from the MRC ORIGIN record when non-zero, else from NSTART (the ChimeraX/EMDB
  convention).
- Quaternions are stored scalar-last, ``quat_xyzw`` (the scipy/roma convention).
- A pose is stored as ``matrix``: 12 floats, row-major 3x4 ``[R | t]``, that maps a candidate's
  *input* coordinates ``x`` to its fitted coordinates ``R @ x + t`` in the map frame. Everything
  else (``quat_xyzw`` of ``R``, the centroid ``translation``) is derived from it.
- Every random choice takes an integer seed, and the seed is written to the outputs.

Public API
----------
The names in ``__all__`` (the README's "Python API" section has an example): read and prepare
a map (:func:`read_map`, :func:`prepare_map`), fit and rank candidates in memory
(:func:`screen`, :class:`FitParams`) or into a folder (:func:`run_fit`), significance
(:func:`add_significance`), compositing (:func:`place_subunits`), the report
(:func:`write_report`). Each is imported from its module on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.2.0"
"""The package version, the one place it is written (pyproject.toml reads it; CHANGELOG.md)."""

__all__ = [
    "Atoms",
    "CompositeParams",
    "CompositeResult",
    "DensityMap",
    "FitParams",
    "PreparedMap",
    "ScreenResult",
    "__version__",
    "add_significance",
    "aggregate_results",
    "apply_matrix",
    "fit_candidates",
    "iter_candidates",
    "load_prepared",
    "place_subunits",
    "prepare_map",
    "rank_candidates",
    "read_map",
    "read_structure",
    "run_composite",
    "run_fit",
    "save_prepared",
    "screen",
    "write_map",
    "write_report",
    "write_structure",
]

_MODULE_OF = {
    **dict.fromkeys(["DensityMap", "PreparedMap", "read_map", "write_map", "prepare_map",
                     "save_prepared", "load_prepared"], "maps"),
    **dict.fromkeys(["Atoms", "read_structure", "write_structure", "apply_matrix"],
                    "structures"),
    **dict.fromkeys(["FitParams", "screen", "ScreenResult", "fit_candidates", "iter_candidates",
                     "run_fit"], "fit"),
    **dict.fromkeys(["rank_candidates", "aggregate_results"], "tables"),
    "add_significance": "significance",
    **dict.fromkeys(["CompositeParams", "CompositeResult", "place_subunits", "run_composite"],
                    "composite"),
    "write_report": "report",
}
"""Public name -> the module that defines it, imported on first use (PEP 562): ``import
difffit_screen`` stays cheap; torch loads with the first fitting name used."""

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from .composite import CompositeParams, CompositeResult, place_subunits, run_composite
    from .fit import FitParams, ScreenResult, fit_candidates, iter_candidates, run_fit, screen
    from .maps import (
        DensityMap,
        PreparedMap,
        load_prepared,
        prepare_map,
        read_map,
        save_prepared,
        write_map,
    )
    from .report import write_report
    from .significance import add_significance
    from .structures import Atoms, apply_matrix, read_structure, write_structure
    from .tables import aggregate_results, rank_candidates


def __getattr__(name: str) -> object:
    """Import a public name from its module on first use (PEP 562)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
