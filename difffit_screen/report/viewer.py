"""Interactive 3D views of the top hits in the density, inside the self-contained HTML report.

The viewer is `3Dmol.js <https://3dmol.org>`_ **2.5.5** (BSD-3-Clause; licence text in
``difffit_screen/vendor/3Dmol-LICENSE.txt``), the minified build of the npm package ``3dmol``
(``build/3Dmol-min.js``, 538 kB, sha256 :data:`VIEWER_SHA256`), shipped in the package and
inlined once into each report, so the page needs no network when it is opened. It was chosen over
NGL (MIT, about 1.3 MB minified) for size, and over Mol* (several MB) for the same reason; it
draws cartoons and isosurfaces of CCP4 maps with WebGL.

Each top hit gets a payload (:func:`hit_payload`): the map cropped around the posed model
(± :data:`VIEW_MARGIN` Å, strided down to at most :data:`MAX_VOXELS` voxels, values quantised to
256 levels so that gzip shrinks them) as a gzipped, base64 CCP4 map, the contour level, and the
posed model's backbone (N, CA, C, O; P of nucleotides) as PDB text, both shifted so that the
crop's first voxel lies at the origin (3Dmol.js reads a CCP4 origin in voxel units, so the shift
keeps map and model in register whatever the map's origin). Viewers are created when scrolled
into view (at most a few WebGL contexts live at once in a browser).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import math
from functools import cache
from importlib import resources

import numpy as np

from .density import crop_indices
from .html import script_json, web_asset

__all__ = ["VIEWER_LICENSE", "VIEWER_NAME", "VIEWER_VERSION", "hit_payload", "viewer_html",
           "viewer_library_html", "viewer_script"]

VIEWER_NAME = "3Dmol.js"
VIEWER_VERSION = "2.5.5"
VIEWER_LICENSE = "BSD-3-Clause"
VIEWER_FILE = "3Dmol-min.js"
VIEWER_SHA256 = "f7cc78921ae72e7623e89cdd111434f58c2efddd2ffda1cd212644b406fb8016"
VIEW_MARGIN = 8.0
"""Å of map kept around a hit's atoms in its 3D view."""
MAX_VOXELS = 64**3
"""Most voxels of one hit's map in the page (strided above it)."""
MAX_MODEL_ATOMS = 20000
"""Most atoms of one hit's model in the page (backbone first; strided above it)."""
SURFACE_COLOUR = "#3f6fb0"
BACKBONE = ("N", "CA", "C", "O", "P", "O5'", "C5'", "C4'", "C3'", "O3'")


@cache
def viewer_script() -> str:
    """The vendored 3Dmol.js source (checked against :data:`VIEWER_SHA256`)."""
    data = resources.files("difffit_screen").joinpath("vendor", VIEWER_FILE).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != VIEWER_SHA256:
        raise RuntimeError(f"vendored {VIEWER_FILE} has sha256 {digest}, not {VIEWER_SHA256}")
    return data.decode("utf-8")


def ccp4_bytes(data_zyx: np.ndarray, voxel: np.ndarray) -> bytes:
    """A CCP4/MRC (mode 2) file of ``data_zyx`` with its first voxel at the origin."""
    data = np.ascontiguousarray(data_zyx, dtype="<f4")
    nz, ny, nx = data.shape
    header = np.zeros(256, dtype="<i4")
    floats = header.view("<f4")
    header[0:3] = (nx, ny, nz)
    header[3] = 2
    header[7:10] = (nx, ny, nz)
    floats[10:13] = (nx * voxel[0], ny * voxel[1], nz * voxel[2])
    floats[13:16] = 90.0
    header[16:19] = (1, 2, 3)
    floats[19:22] = (data.min(), data.max(), data.mean())
    header[22] = 1
    raw = header.tobytes()
    raw = raw[:208] + b"MAP " + bytes([0x44, 0x41, 0, 0]) + raw[216:]
    return raw + data.tobytes()


def quantise(data: np.ndarray, levels: int = 256) -> np.ndarray:
    """``data`` rounded to ``levels`` evenly spaced values between its min and max."""
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        return data.astype(np.float32)
    step = (hi - lo) / (levels - 1)
    return (np.round((data - lo) / step) * step + lo).astype(np.float32)


def backbone_pdb(xyz: np.ndarray, atom_name: np.ndarray, res_name: np.ndarray,
                 res_seq: np.ndarray, chain: np.ndarray, element: np.ndarray,
                 max_atoms: int = MAX_MODEL_ATOMS) -> str:
    """PDB ``ATOM`` records of the backbone atoms (all atoms if there is no backbone)."""
    mask = np.isin(atom_name, BACKBONE)
    if mask.sum() < 3:
        mask = np.ones(len(xyz), bool)
    idx = np.flatnonzero(mask)
    if len(idx) > max_atoms:
        idx = idx[:: math.ceil(len(idx) / max_atoms)]
    lines = []
    for n, i in enumerate(idx, start=1):
        name = str(atom_name[i])
        name = f" {name:<3s}" if len(name) < 4 else name[:4]
        x, y, z = xyz[i]
        lines.append(f"ATOM  {n % 100000:5d} {name:4s} {str(res_name[i])[:3]:>3s} "
                     f"{(str(chain[i]) or 'A')[:1]}{int(res_seq[i]) % 10000:4d}    "
                     f"{x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00          {element[i]!s:>2s}")
    return "\n".join(lines) + "\nEND\n"


def hit_payload(data_zyx: np.ndarray, origin: np.ndarray, voxel: np.ndarray,
                threshold: float | None, atoms, xyz: np.ndarray, colour: str,
                label: str) -> dict:
    """The 3D view of one hit: its cropped map and backbone, shifted to the crop's frame.

    Parameters
    ----------
    data_zyx, origin, voxel :
        The map (``[z, y, x]``), the position of voxel ``[0, 0, 0]`` and the voxel size
        (``[x, y, z]``, Å).
    threshold : float or None
        Contour level (None: the map's mean + 2 sd within the crop).
    atoms : Atoms
        The candidate (names, residues of ``xyz``'s atoms).
    xyz : np.ndarray
        ``(N, 3)`` posed coordinates in the map frame.
    colour, label : str
        The hit's rank colour and title.

    Returns
    -------
    dict
        JSON-able: ``map`` (base64 of the gzipped CCP4 map), ``level``, ``pdb``, ``colour``
        (the model's), ``surface`` (the contour's colour), ``label``, ``stride``,
        ``n_voxels``.
    """
    origin = np.asarray(origin, float)
    voxel = np.asarray(voxel, float)
    lo, hi = crop_indices(data_zyx.shape, origin, voxel, xyz, VIEW_MARGIN)
    n = int(np.prod(hi - lo))
    stride = max(1, math.ceil((n / MAX_VOXELS) ** (1 / 3)))
    sub = data_zyx[lo[2]:hi[2]:stride, lo[1]:hi[1]:stride, lo[0]:hi[0]:stride]
    if threshold is None:
        threshold = float(sub.mean() + 2 * sub.std())
    corner = origin + lo * voxel
    packed = gzip.compress(ccp4_bytes(quantise(sub), voxel * stride), compresslevel=9, mtime=0)
    pdb = backbone_pdb(np.asarray(xyz, float) - corner, atoms.atom_name, atoms.res_name,
                       atoms.res_seq, atoms.chain, atoms.element)
    return {"map": base64.b64encode(packed).decode("ascii"), "level": float(threshold),
            "pdb": pdb, "colour": colour, "surface": SURFACE_COLOUR, "label": label,
            "stride": stride,
            "n_voxels": int(sub.size)}


def viewer_html(rank: int, payload: dict) -> str:
    """The viewer's ``<div>`` and its payload (a JSON script element) for one hit."""
    data = script_json(payload, separators=(",", ":"))
    return (f'<div class="viewer-box"><div class="viewer3d" id="viewer-{rank}" '
            f'data-rank="{rank}" data-payload="viewer-data-{rank}"></div>'
            f'<p class="viewer-note">Drag to rotate, scroll to zoom; map contour at '
            f'{payload["level"]:.4g} (<span style="color:{SURFACE_COLOUR}">surface</span>), '
            f'model backbone as cartoon. '
            f'<button class="viewer-reset" data-rank="{rank}">reset view</button></p>'
            f'<script type="application/json" id="viewer-data-{rank}">{data}</script></div>')


def viewer_library_html() -> str:
    """The inlined viewer library (once per page) and the code that starts the viewers."""
    return (f"<script>/* {VIEWER_NAME} {VIEWER_VERSION}, {VIEWER_LICENSE}, "
            f"https://3dmol.org (vendored, see difffit_screen/vendor/) */\n{viewer_script()}"
            f"</script>\n<script>{web_asset('viewer.js')}</script>")

