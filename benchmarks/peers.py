"""Peer fitting tools for the speed/accuracy benchmark: PowerFit and ChimeraX ``fitmap``.

Both peers are installed on demand into virtual environments of their own, OUTSIDE the
repository and never into the project's venv:

* ``$DIFFFIT_SCREEN_PEERS_DIR/powerfit``  -- PyPI ``powerfit-em==6.0.2``
* ``$DIFFFIT_SCREEN_PEERS_DIR/chimerax``  -- PyPI ``chimerax==0.1.71`` (yanked, ``--no-deps``) plus
  its undeclared dependencies and a small generated stand-in for the ``chimerax/core/nogui.py``
  module the wheel lacks.

``DIFFFIT_SCREEN_PEERS_DIR`` defaults to ``~/.cache/difffit_screen_peers``. Nothing from either
peer is committed to the repository; the stand-in and the fitmap driver script below are our
own code, written into the peer venv at install time.

Public functions
----------------
``ensure_powerfit()``, ``ensure_chimerax()``
    Install (if needed) and smoke-test a peer; return the executable to run. ``ensure_chimerax``
    raises :class:`PeerUnavailable` with the reason when it cannot be made to run.
``run_powerfit(map_path, resolution, model_path, angle, nproc=1)``
``run_fitmap(map_path, resolution, level, model_path, search=200, seed=1)``
    Run one model against one map; return a dict with ``wall_s``, ``cpu_s`` (user+sys of the
    child process and all its reaped descendants, from ``os.wait4``), ``peak_rss_mb`` (largest
    single process of the tree), the top solution's pose as a 3x4 ``[R|t]`` matrix mapping the
    INPUT model coordinates into the map frame (``x_map = R @ x_input + t``), its scores, and the
    ranking scores of all solutions.

Only the standard library and NumPy are needed on the caller's side.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

POWERFIT_SPEC = "powerfit-em==6.0.2"
CHIMERAX_SPEC = "chimerax==0.1.71"

# Undeclared run-time dependencies of the 0.1.71 wheel (found by trial on Python 3.11; see
# shared/docs/peers_notes.md section 8). Pinned where newer versions break the wheel.
CHIMERAX_DEPS = [
    "numpy==1.26.4", "scipy==1.12.0", "pandas==2.2.2", "matplotlib<3.10", "tinyarray", "Cython",
    "packaging", "tomli", "pydicom", "tcia_utils", "pkginfo==1.9.6", "wheel-filename==1.4.1",
    "webcolors==1.13", "msgpack", "appdirs", "sortedcontainers", "filelock", "psutil",
    "python-dateutil", "distro", "Pillow", "lz4", "html2text", "beautifulsoup4", "lxml",
    "networkx", "requests", "six", "colorama", "build", "docutils", "Jinja2", "Pygments",
    "traitlets", "ihm", "tifffile", "imagecodecs",
]

# Karney orientation sets PowerFit picks from (requested angle -> real angle, #rotations); for
# reporting only, the real numbers are read back from PowerFit itself when possible.
POWERFIT_ROTATIONS = {20: (20.83, 648), 10: (9.72, 7416), 5: (5.27, 53256)}


class PeerUnavailable(RuntimeError):
    """A peer tool could not be installed or started; the message says why."""


def peers_dir() -> Path:
    """Root folder of the peer venvs (``$DIFFFIT_SCREEN_PEERS_DIR`` or the user cache)."""
    return Path(os.environ.get("DIFFFIT_SCREEN_PEERS_DIR",
                               "~/.cache/difffit_screen_peers")).expanduser()


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _make_venv(venv: Path) -> None:
    if not _venv_python(venv).exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        # The system interpreter, not the project's venv, so nothing leaks in either direction.
        base = shutil.which("python3.11") or shutil.which("python3") or sys.executable
        subprocess.run([base, "-m", "venv", str(venv)], check=True)


def _pip(venv: Path, *args: str, log: Path) -> None:
    with open(log, "a") as fh:
        fh.write(f"$ pip install {' '.join(args)}\n")
        fh.flush()
        r = subprocess.run([str(_venv_python(venv)), "-m", "pip", "install",
                            "--disable-pip-version-check", *args],
                           stdout=fh, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise PeerUnavailable(f"pip install {' '.join(args)} failed (exit {r.returncode}); "
                              f"see {log}")


# --------------------------------------------------------------------------------------------
# measured subprocess
# --------------------------------------------------------------------------------------------

def run_measured(cmd: list[str], cwd: Path | str | None = None,
                 env: dict | None = None, timeout: float | None = None) -> dict:
    """Run ``cmd``; return wall/cpu time, peak RSS, exit code and captured output.

    CPU time and peak RSS come from ``os.wait4`` on the child, i.e. the rusage of the child
    and every descendant it reaped (multiprocessing workers included). ``peak_rss_mb`` is the
    largest single process, not the sum over a process tree.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        try:
            if timeout is None:
                _, status, ru = os.wait4(p.pid, 0)
            else:
                deadline = t0 + timeout
                while True:
                    pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                    if pid:
                        break
                    if time.perf_counter() > deadline:
                        p.kill()
                        _, status, ru = os.wait4(p.pid, 0)
                        break
                    time.sleep(0.05)
        except BaseException:
            p.kill()
            raise
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    return {"returncode": p.returncode, "wall_s": wall, "user_s": ru.ru_utime,
            "sys_s": ru.ru_stime, "cpu_s": ru.ru_utime + ru.ru_stime,
            "peak_rss_mb": ru.ru_maxrss / 1024.0, "stdout": stdout, "stderr": stderr}


# --------------------------------------------------------------------------------------------
# small PDB helpers (no gemmi needed here)
# --------------------------------------------------------------------------------------------

def read_pdb_xyz(path: Path | str) -> np.ndarray:
    """Coordinates of the ATOM/HETATM records of the first model, in file order."""
    xyz = []
    with open(path) as fh:
        for line in fh:
            rec = line[:6]
            if rec.startswith("ENDMDL"):
                break
            if rec in ("ATOM  ", "HETATM"):
                xyz.append((float(line[30:38]), float(line[38:46]), float(line[46:54])))
    return np.asarray(xyz, dtype=np.float64).reshape(-1, 3)


def kabsch_pose(x_from: np.ndarray, x_to: np.ndarray) -> np.ndarray:
    """Least-squares rigid 3x4 ``[R|t]`` with ``x_to ~= R @ x_from + t``."""
    ca, cb = x_from.mean(0), x_to.mean(0)
    h = (x_from - ca).T @ (x_to - cb)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return np.hstack([r, (cb - r @ ca)[:, None]])


def nearest_rotation(a: np.ndarray) -> np.ndarray:
    """Closest proper rotation to a 3x3 matrix (for the 3-decimal rotations PowerFit prints)."""
    u, _, vt = np.linalg.svd(a)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def apply_pose(pose: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    pose = np.asarray(pose, dtype=np.float64).reshape(3, 4)
    return xyz @ pose[:, :3].T + pose[:, 3]


# --------------------------------------------------------------------------------------------
# PowerFit
# --------------------------------------------------------------------------------------------

def ensure_powerfit(root: Path | None = None) -> Path:
    """Install ``powerfit-em`` into ``<root>/powerfit`` if needed; return the ``powerfit`` CLI."""
    venv = (root or peers_dir()) / "powerfit"
    exe = venv / "bin" / "powerfit"
    if not exe.exists():
        _make_venv(venv)
        _pip(venv, "-q", POWERFIT_SPEC, log=venv.parent / "powerfit_install.log")
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    if r.returncode != 0:
        raise PeerUnavailable(f"powerfit --version failed: {r.stderr.strip()[-500:]}")
    return exe


def powerfit_version(root: Path | None = None) -> str:
    exe = ensure_powerfit(root)
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    return (r.stdout or r.stderr).strip()


def _powerfit_n_rotations(exe: Path, angle: float) -> tuple[float, int] | None:
    py = exe.parent / "python"
    code = ("from powerfit_em.rotations import proportional_orientations as p;"
            f"q, _, d = p({float(angle)!r}); print(d, len(q))")
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    try:
        deg, n = r.stdout.split()
        return float(deg), int(n)
    except ValueError:
        return POWERFIT_ROTATIONS.get(int(angle))


def _read_powerfit_solutions(path: Path) -> list[dict]:
    rows = []
    with open(path) as fh:
        header = fh.readline().strip().lstrip("#").split(",")
        for line in fh:
            if not line.strip():
                continue
            vals = line.strip().split(",")
            d = dict(zip(header, vals, strict=True))
            rows.append({
                "rank": int(d["rank"]), "cc": float(d["cc"]), "fisher_z": float(d["Fish-z"]),
                "rel_z": float(d["rel-z"]),
                "centroid": [float(d["x"]), float(d["y"]), float(d["z"])],
                "rotation": [[float(d[f"a{i}{j}"]) for j in (1, 2, 3)] for i in (1, 2, 3)],
            })
    return rows


def _powerfit_search_seconds(log_text: str) -> float | None:
    """Search time from powerfit.log: timestamps of 'Starting search' and 'Time for search'.

    (The message itself switches from '1.886 s' to '1m 23s' above a minute.)
    """
    from datetime import datetime

    t0 = t1 = None
    for line in log_text.splitlines():
        stamp = line[:23]
        if "Starting search" in line or "Time for search:" in line:
            try:
                t = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
            except ValueError:
                continue
            if "Starting search" in line:
                t0 = t
            else:
                t1 = t
                msg = line.split("Time for search:")[1].strip()
                if msg.endswith(" s") and "m" not in msg:
                    try:
                        return float(msg[:-2])
                    except ValueError:
                        pass
    if t0 is not None and t1 is not None:
        return (t1 - t0).total_seconds()
    return None


def run_powerfit(map_path, resolution, model_path, angle, nproc=1, *, outdir=None,
                 extra_args=(), n_models=1, root: Path | None = None,
                 timeout: float | None = None) -> dict:
    """Run the PowerFit CLI (default scoring: Laplace + core-weighted LCC) on one model.

    The pose: PowerFit centres the model on its atom centroid ``c`` and reports, per solution,
    the rotation ``A`` applied to the centred model and the position ``p`` of the centroid, so
    ``x_map = A (x - c) + p``, i.e. ``[R|t] = [A | p - A c]``. ``A`` is printed with 3 decimals,
    so the pose returned is the least-squares superposition of the input model onto the
    ``fit_1.pdb`` that PowerFit writes (exact to PDB precision); the pose rebuilt from
    ``solutions.out`` is kept as a cross-check (``pose_check_rmsd``, all atoms, in A).
    """
    exe = ensure_powerfit(root)
    map_path, model_path = Path(map_path).resolve(), Path(model_path).resolve()
    tmp = None
    if outdir is None:
        tmp = tempfile.mkdtemp(prefix="powerfit_")
        outdir = Path(tmp)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(exe), str(map_path), f"{resolution:g}", str(model_path), "-a", f"{angle:g}",
           "-p", str(int(nproc)), "-d", str(outdir), "-n", str(int(n_models)),
           "--delimiter", ",", *map(str, extra_args)]
    env = dict(os.environ)
    # no thread oversubscription behind -p: one process per requested core, as PowerFit intends
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    m = run_measured(cmd, cwd=outdir, env=env, timeout=timeout)
    res: dict = {
        "tool": "powerfit", "version": POWERFIT_SPEC.split("==")[1],
        "settings": {"angle": angle, "nproc": int(nproc), "resolution": resolution,
                     "extra_args": list(map(str, extra_args)),
                     "scoring": ("LCC" + ("" if "-nl" in extra_args else " + Laplace")
                                 + ("" if "-ncw" in extra_args else " + core-weighted"))},
        "command": cmd,
        **{k: m[k] for k in ("returncode", "wall_s", "cpu_s", "user_s", "sys_s", "peak_rss_mb")},
    }
    rot = _powerfit_n_rotations(exe, angle)
    if rot:
        res["settings"]["real_angle"], res["settings"]["n_rotations"] = rot
    log = outdir / "powerfit.log"
    if log.exists():
        res["search_s"] = _powerfit_search_seconds(log.read_text())
    sol_path = outdir / "solutions.out"
    if m["returncode"] != 0 or not sol_path.exists():
        res["error"] = (m["stderr"] or m["stdout"])[-2000:]
        res["top"] = None
        res["scores"] = []
        return res
    sols = _read_powerfit_solutions(sol_path)
    res["n_solutions"] = len(sols)
    res["scores"] = [s["cc"] for s in sols]
    res["rel_z_scores"] = [s["rel_z"] for s in sols]
    res["score_name"] = "cc"
    if not sols:
        res["top"] = None
        return res
    top = sols[0]
    x_in = read_pdb_xyz(model_path)
    a = nearest_rotation(np.asarray(top["rotation"]))
    c = x_in.mean(0)
    pose_sol = np.hstack([a, (np.asarray(top["centroid"]) - a @ c)[:, None]])
    pose = pose_sol
    fit1 = outdir / "fit_1.pdb"
    if fit1.exists():
        x_fit = read_pdb_xyz(fit1)
        if len(x_fit) == len(x_in):
            pose = kabsch_pose(x_in, x_fit)
            res["pose_source"] = "superposition of input onto fit_1.pdb"
        else:
            res["pose_source"] = "solutions.out (atom count mismatch with fit_1.pdb)"
    else:
        res["pose_source"] = "solutions.out"
    diff = apply_pose(pose, x_in) - apply_pose(pose_sol, x_in)
    res["pose_check_rmsd"] = float(np.sqrt((diff ** 2).sum(1).mean()))
    res["top"] = {"cc": top["cc"], "fisher_z": top["fisher_z"], "rel_z": top["rel_z"],
                  "centroid": top["centroid"], "matrix": pose.tolist()}
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


# --------------------------------------------------------------------------------------------
# ChimeraX fitmap
# --------------------------------------------------------------------------------------------

# Our stand-in for chimerax/core/nogui.py, which the 0.1.71 wheel lacks. Written at install
# time; it is not ChimeraX code, just the attributes chimerax.core touches when there is no GUI.
NOGUI_STANDIN = '''\
"""Headless stand-in for chimerax.core.nogui (missing from the yanked chimerax 0.1.71 wheel).

Generated by difffit_screen benchmarks/peers.py; not ChimeraX source.
"""
import sys
import threading

from .logger import PlainTextLog


class UI:
    is_gui = False
    has_graphics = False
    main_window = None

    def __init__(self, session):
        self.session = session
        from .triggerset import TriggerSet
        self.triggers = TriggerSet()
        self.triggers.add_trigger("ready")
        self.stereo = False
        self.autostart_tools = False
        self.mouse_modes = None
        self._main_thread = threading.current_thread()

    def initialize_color_output(self, color=False):
        pass

    def is_main_thread(self):
        return threading.current_thread() is self._main_thread

    def thread_safe(self, func, *args, **kw):
        func(*args, **kw)

    def timer(self, millisec, callback, *args, **kw):
        t = threading.Timer(millisec / 1000.0, callback, args, kw)
        t.daemon = True
        t.start()
        return t

    def build(self):
        pass

    def event_loop(self):
        pass

    def quit(self, confirm=False):
        pass

    def update_undo(self, *args, **kw):
        pass


class _Input:
    pass


class NoGuiLog(PlainTextLog):
    def log(self, level, msg):
        stream = sys.stderr if level >= self.LEVEL_WARNING else sys.stdout
        stream.write(msg)
        stream.flush()
        return True

    def status(self, msg, color, secondary):
        return False
'''

# Driver run by the ChimeraX venv's python: one model, one map, DomainFit's fit_in_chimerax.py
# call (volume level L step 1; fitmap resolution R search N placement sr), results as JSON.
FITMAP_DRIVER = '''\
"""Run ChimeraX fitmap (global search) headless; generated by difffit_screen benchmarks/peers.py."""
import json
import math
import random
import sys
import time

t_start = time.perf_counter()
args = json.loads(sys.argv[1])
random.seed(args["seed"])          # fitmap's random starts use the stdlib random module
import numpy as np
np.random.seed(args["seed"])

import chimerax.core.session as _S
_holder = {}
_orig_init = _S.Session.__init__


def _capture(self, *a, **k):
    _orig_init(self, *a, **k)
    _holder["session"] = self


_S.Session.__init__ = _capture
from chimerax.core.__main__ import init as _cx_init

_cx_init(["ChimeraX", "--nogui", "--exit", "--silent"], event_loop=False)
session = _holder["session"]

from chimerax.atomic import initialize_atomic
initialize_atomic(session)
from chimerax.core.objects import Objects
from chimerax.map.volume import open_map
from chimerax.map_fit.fitcmd import fitmap
from chimerax.pdb import open_pdb

vols, _ = open_map(session, args["map"])
v = vols[0]
session.models.add([v])
v.set_parameters(surface_levels=[args["level"]], step=1)   # DomainFit: volume #1 level L step 1
v.show(style="surface")
ms, _ = open_pdb(session, args["model"], log_info=False)
m = ms[0]
session.models.add([m])
t_setup = time.perf_counter()
fits = fitmap(session, Objects(atoms=m.atoms, models=[m]), in_map=v,
              resolution=args["resolution"], search=args["search"], placement="sr")
t_search = time.perf_counter()
vpos = np.asarray(v.position.matrix)
out = []
for f in fits:
    s = f.stats
    # f.transforms[0]: model coordinates -> map (volume-local) coordinates
    out.append({
        "matrix": np.asarray(f.transforms[0].matrix).tolist(),
        "correlation": float(s.get("correlation", float("nan"))),
        "cam": float(s.get("correlation about mean", float("nan"))),
        "overlap": float(s.get("overlap", float("nan"))),
        "average_map_value": float(s.get("average map value", float("nan"))),
        "inside": float(f.points_inside_contour()),
        "points": int(s.get("points", 0)),
        "hits": int(f.hits()),
    })
json.dump({"fits": out, "n_atoms": int(len(m.atoms)), "volume_position": vpos.tolist(),
           "setup_s": t_setup - t_start, "search_s": t_search - t_setup,
           "chimerax_version": __import__("chimerax.core").core.version},
          open(args["out"], "w"))
'''


def _chimerax_site(venv: Path) -> Path:
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    cands = sorted((venv / "lib").glob("python3*/site-packages"))
    return cands[0] if cands else venv / "lib" / py / "site-packages"


def ensure_chimerax(root: Path | None = None) -> Path:
    """Install the ChimeraX wheel + deps + stand-in into ``<root>/chimerax``; return its python.

    Raises :class:`PeerUnavailable` (with the reason) when the wheel cannot be installed or
    does not start (e.g. no cp311 manylinux wheel for this interpreter).
    """
    venv = (root or peers_dir()) / "chimerax"
    log = venv.parent / "chimerax_install.log"
    py = _venv_python(venv)
    marker = venv / ".difffit_ready"
    if not marker.exists():
        try:
            _make_venv(venv)
        except subprocess.CalledProcessError as exc:
            raise PeerUnavailable(f"cannot create venv {venv}: {exc}") from exc
        r = subprocess.run([str(py), "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True)
        if "(3, 11)" not in r.stdout:
            raise PeerUnavailable("the only Linux wheel of chimerax (0.1.71) is cp311; "
                                  f"the peer venv has Python {r.stdout.strip()}")
        if not (_chimerax_site(venv) / "chimerax" / "core").is_dir():
            _pip(venv, "-q", "--no-deps", CHIMERAX_SPEC, log=log)
        _pip(venv, "-q", *CHIMERAX_DEPS, log=log)
    site = _chimerax_site(venv)
    nogui = site / "chimerax" / "core" / "nogui.py"
    if not nogui.exists() or nogui.read_text() != NOGUI_STANDIN:
        nogui.write_text(NOGUI_STANDIN)
    driver = venv / "difffit_fitmap_driver.py"
    if not driver.exists() or driver.read_text() != FITMAP_DRIVER:
        driver.write_text(FITMAP_DRIVER)
    if not marker.exists():
        r = subprocess.run([str(py), "-c", "import chimerax.map_fit.fitcmd, chimerax.pdb, "
                            "chimerax.map.volume, chimerax.atomic"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise PeerUnavailable("chimerax does not import after install: "
                                  + r.stderr.strip()[-800:])
        marker.write_text(CHIMERAX_SPEC + "\n")
    return py


def run_fitmap(map_path, resolution, level, model_path, search=200, seed=1, *,
               root: Path | None = None, timeout: float | None = None,
               keep_fits: int = 20) -> dict:
    """Run ChimeraX ``fitmap`` with DomainFit's settings on one model (one process per model).

    ``level`` is the map contour (DomainFit: ``volume #1 level L step 1``); starts are placed in
    the bounding box of that contour. Returns the fit list sorted as ChimeraX sorts it
    (correlation, then average map value); ``top`` is None when no fit keeps >= 10 % of its
    points inside the contour ("no fit", e.g. a model that does not fit the box).
    ``ranking_z``: DomainFit-style significance of the best fit, the Fisher-z of its cam minus
    the mean over all unique fits of the model, in SDs (a plain z-score instead of fdrtool).
    """
    py = ensure_chimerax(root)
    driver = py.parent.parent / "difffit_fitmap_driver.py"
    map_path, model_path = Path(map_path).resolve(), Path(model_path).resolve()
    with tempfile.TemporaryDirectory(prefix="fitmap_") as tmp:
        out = Path(tmp) / "fits.json"
        args = {"map": str(map_path), "model": str(model_path), "level": float(level),
                "resolution": float(resolution), "search": int(search), "seed": int(seed),
                "out": str(out)}
        cmd = [str(py), str(driver), json.dumps(args)]
        m = run_measured(cmd, cwd=tmp, timeout=timeout)
        data = json.loads(out.read_text()) if out.exists() else None
    res: dict = {
        "tool": "chimerax_fitmap", "version": CHIMERAX_SPEC.split("==")[1],
        "settings": {"search": int(search), "seed": int(seed), "resolution": resolution,
                     "level": level, "placement": "sr", "metric": "overlap (default)"},
        **{k: m[k] for k in ("returncode", "wall_s", "cpu_s", "user_s", "sys_s", "peak_rss_mb")},
    }
    if m["returncode"] != 0 or data is None:
        res["error"] = (m["stderr"] or m["stdout"])[-2000:]
        res["top"] = None
        res["scores"] = []
        return res
    fits = data["fits"]
    if not np.allclose(np.asarray(data["volume_position"]), np.eye(3, 4)):
        # never the case for an opened map, but keep the pose in the map's own frame if it is
        vp = np.vstack([np.asarray(data["volume_position"]), [0, 0, 0, 1]])
        for f in fits:
            f["matrix"] = (vp @ np.vstack([np.asarray(f["matrix"]), [0, 0, 0, 1]]))[:3].tolist()
    res.update({"setup_s": data["setup_s"], "search_s": data["search_s"],
                "n_unique_fits": len(fits), "n_hits_kept": int(sum(f["hits"] for f in fits)),
                "score_name": "correlation",
                "scores": [f["correlation"] for f in fits],
                "cam_scores": [f["cam"] for f in fits],
                "fits": fits[:keep_fits], "chimerax_version": data.get("chimerax_version")})
    if not fits:
        res["top"] = None
        res["no_fit"] = True
        return res
    res["no_fit"] = False
    top = dict(fits[0])
    z = np.arctanh(np.clip(np.asarray(res["cam_scores"]), -0.999999, 0.999999))
    if len(z) > 2 and z.std() > 0:
        res["ranking_z"] = float((z[0] - z.mean()) / z.std())
    res["top"] = top
    return res


def machine_info() -> dict:
    """CPU model, core count, load average, date (for the benchmark record)."""
    cpu = None
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import platform
    return {"cpu_model": cpu, "nproc": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "loadavg": list(os.getloadavg()), "python": platform.python_version(),
            "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


if __name__ == "__main__":  # tiny manual check: python benchmarks/peers.py MAP RES MODEL
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tool", choices=["powerfit", "fitmap", "install"])
    ap.add_argument("--map")
    ap.add_argument("--resolution", type=float, default=4.0)
    ap.add_argument("--level", type=float)
    ap.add_argument("--model")
    ap.add_argument("--angle", type=float, default=10.0)
    ap.add_argument("--search", type=int, default=200)
    a = ap.parse_args()
    if a.tool == "install":
        print(ensure_powerfit())
        try:
            print(ensure_chimerax())
        except PeerUnavailable as exc:
            print("chimerax unavailable:", exc)
    elif a.tool == "powerfit":
        print(json.dumps(run_powerfit(a.map, a.resolution, a.model, a.angle), indent=1))
    else:
        r = run_fitmap(a.map, a.resolution, a.level, a.model, search=a.search)
        r.pop("fits", None)
        print(json.dumps(r, indent=1))
