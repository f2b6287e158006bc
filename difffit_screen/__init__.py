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
"""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed metadata when first asked for (importing
    ``importlib.metadata`` costs a tenth of a second of every command's start)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("difffit-screen")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        value = "0.0.0"
    globals()["__version__"] = value
    return value
