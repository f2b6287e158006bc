"""GPU benchmark (issue "Performance toward the limit"): identity screen and speed case on CUDA.

One call, on a machine with a CUDA GPU (it exits cleanly, writing nothing, without one):

1. **Sampling ceiling.** The operation the search repeats is one ``grid_sample`` of the
   4-channel (value + gradient) volume at every atom of every placement (``optimise.py``,
   analytic gradient). It is timed alone on the demo's prepared volume at a large batch
   (``2**24`` points, after warm-up): the samples/s the card reaches on the op we use, with no
   Adam, no rotation and no bookkeeping. The HBM bound is also given: a sample reads 8 corners
   x 4 channels x 4 bytes = 128 B, so ``bandwidth / 128 B`` samples/s if no corner were reused
   from cache (the demo volume is 0.3-1 MB and stays in L2, so the measured ceiling can exceed
   it; the measured ceiling is the figure to compare against).
2. **Identity screen.** The 493-input screen of ``bench_identity.py`` (``density2.mrc``, the two
   PACRG paralogs and the third demo domain + the 490 tardigrade AlphaFold models), default
   :class:`FitParams` (device ``cuda``, seed 0), in-process: read, fit, rank, significance; wall
   time after CUDA initialisation, candidates/s, search samples/s against the ceiling, peak GPU
   memory (``torch.cuda.max_memory_allocated``), and GPU utilisation sampled by ``nvidia-smi``
   every 0.2 s during the screen (mean and max). The paralogs' ranks are checked.
3. **Speed case.** ``difffit-screen fit`` on one demo domain (I7MLV6_D3) end to end through the
   CLI (process start-up, CUDA initialisation and writing included), three times.

Run from the repository root: ``python benchmarks/bench_gpu.py [--skip-screen]``. Results:
``benchmarks/results/gpu.json`` and ``gpu.md``, written again after every phase (a call cut
short by its time box keeps what it measured). ``--device cpu`` tests the script here (the
CPU's figures, not a GPU's). ``--limit N`` screens the first N library models
only (the screen's rate then extrapolates to 493 inputs); ``--profile N`` first profiles a
screen of N models.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DIFFFIT_SCREEN_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"
PARALOGS = ["I7MLV6_D3", "I7M317_D1"]
THIRD = "I7LV70_D1"
THRESHOLD = 0.886
RESOLUTION = 4.0
BYTES_PER_SAMPLE = 8 * 4 * 4  # 8 corners x (value + 3 gradient channels) x float32


class GpuMonitor:
    """Sample ``nvidia-smi`` utilisation and memory every ``period`` seconds in a thread."""

    def __init__(self, period: float = 0.2):
        self.period = period
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
               "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout
                util, mem = (float(v) for v in out.strip().splitlines()[0].split(","))
                self.samples.append((util, mem))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self._stop.wait(self.period)

    def __enter__(self) -> GpuMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {"n": 0}
        u = np.array([s[0] for s in self.samples])
        m = np.array([s[1] for s in self.samples])
        return {"n": len(u), "util_mean_pct": float(u.mean()), "util_max_pct": float(u.max()),
                "mem_used_max_mib": float(m.max())}


def sync(device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_ceiling(prep, device, n: int = 2 ** 24) -> dict:
    """Samples/s of the search's ``grid_sample`` alone (4 channels, large batch)."""
    import torch
    import torch.nn.functional as F

    from difffit_screen.optimise import VolumeSampler

    sampler = VolumeSampler(prep.loss_volume, device)
    vol = sampler.volume
    grid = (torch.rand((1, n, 1, 1, 3), device=device) * 1.8 - 0.9).to(vol.dtype)
    for _ in range(3):
        F.grid_sample(vol, grid, mode="bilinear", padding_mode="border", align_corners=True)
    sync(device)
    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        F.grid_sample(vol, grid, mode="bilinear", padding_mode="border", align_corners=True)
    sync(device)
    rate = reps * n / (time.perf_counter() - t0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    bw = 4.8e12 if "H200" in name else (3.35e12 if "H100" in name else float("nan"))
    return {"grid_sample_samples_per_s": rate, "points": n, "volume_shape": list(vol.shape),
            "volume_mb": vol.numel() * vol.element_size() / 1e6,
            "hbm_bytes_per_s": bw, "hbm_bound_samples_per_s": bw / BYTES_PER_SAMPLE}


def run_screen(prep, params, device, limit: int | None = None) -> dict:
    """The 493-input identity screen in-process; returns timings and the ranking's checks."""
    import torch

    from difffit_screen.fit import fit_candidates, iter_candidates
    from difffit_screen.significance import add_significance
    from difffit_screen.tables import FITS_SCHEMA, rank_candidates, table_from_rows

    demo = DATA / "domainfit_demo"
    inputs = [str(demo / f"{n}.pdb") for n in [*PARALOGS, THIRD]]
    library = sorted(str(p) for p in (DATA / "library_tardigrade_afdb").glob("*.pdb.gz"))
    inputs += library[:limit] if limit else library
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with GpuMonitor() as mon:
        t0 = time.perf_counter()
        out = fit_candidates(prep, iter_candidates(inputs, params), params, progress=False)
        ranking = add_significance(rank_candidates(table_from_rows(out.fits, FITS_SCHEMA)))
        sync(device)
        wall = time.perf_counter() - t0
    names = ranking.column("candidate").to_pylist()
    ranks = {p: names.index(p) + 1 if p in names else None for p in PARALOGS}
    return {"n_inputs": len(inputs), "n_failures": len(out.failures), "wall_s": wall,
            "candidates_per_s": len(inputs) / wall, "search_s": out.search_seconds,
            "search_samples": out.search_samples,
            "samples_per_s": out.search_samples / max(out.search_seconds, 1e-9),
            "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 1e6 if cuda else 0.0,
            "gpu": mon.summary(), "paralog_ranks": ranks,
            "paralogs_top2": sorted(r for r in ranks.values() if r) == [1, 2],
            "top5": names[:5]}


def run_cli_case(device: str, reps: int = 3) -> list[float]:
    """Wall seconds of ``difffit-screen fit`` on one demo domain (CUDA), end to end."""
    demo = DATA / "domainfit_demo"
    walls = []
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "difffit_screen.cli", "fit", "--map",
                   str(demo / "density2.mrc"), "--threshold", str(THRESHOLD), "--resolution",
                   str(RESOLUTION), "--device", device, "--out", tmp,
                   str(demo / f"{PARALOGS[0]}.pdb")]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
    return walls


def render_md(rec: dict) -> str:
    c, s = rec["ceiling"], rec.get("screen")
    lines = [f"# GPU benchmark ({rec['gpu_name']})", "",
             f"torch {rec['torch']}, CUDA {rec['cuda']}, {rec['cpu_count']} CPU threads; "
             f"date {rec['date']}.", "",
             f"- sampling ceiling (one 4-channel `grid_sample`, {c['points']:,} points, demo "
             f"volume {c['volume_shape']}): **{c['grid_sample_samples_per_s']:.3g} samples/s**; "
             f"HBM bound at 128 B/sample: {c['hbm_bound_samples_per_s']:.3g} samples/s"]
    if s:
        g = s["gpu"]
        lines += [
            f"- identity screen ({s['n_inputs']} inputs, default settings, in-process after CUDA "
            f"start): **{s['wall_s']:.1f} s**, {s['candidates_per_s']:.1f} candidates/s; "
            f"search {s['search_s']:.1f} s at {s['samples_per_s']:.3g} samples/s "
            f"({100 * s['samples_per_s'] / c['grid_sample_samples_per_s']:.1f} % of the ceiling)"
            + (f"; at this rate the 493-input screen takes {493 / s['candidates_per_s']:.0f} s"
               if s["n_inputs"] < 493 else "")
            + f" (target 30 s: {'met' if 493 / s['candidates_per_s'] <= 30 else 'not met'})",
            f"- paralog ranks {s['paralog_ranks']} (top 2: {s['paralogs_top2']}); failures "
            f"{s['n_failures']}",
            f"- peak GPU memory (torch) {s['peak_gpu_memory_mb']:.0f} MB; nvidia-smi "
            f"utilisation mean {g.get('util_mean_pct', float('nan')):.0f} %, max "
            f"{g.get('util_max_pct', float('nan')):.0f} % ({g.get('n', 0)} samples), memory "
            f"used max {g.get('mem_used_max_mib', float('nan')):.0f} MiB"]
    if rec.get("cli_walls"):
        lines.append(f"- one demo domain through `difffit-screen fit --device {rec['device']}`, "
                     "end to end: "
                     f"{', '.join(f'{w:.2f}' for w in rec['cli_walls'])} s")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-screen", action="store_true")
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--out", default=str(RESULTS), help="folder of gpu.json / gpu.md")
    ap.add_argument("--device", default="cuda", help="cuda (cpu only to test this script)")
    ap.add_argument("--limit", type=int, help="first N library models only (testing)")
    ap.add_argument("--points", type=int, default=2 ** 24, help="points of the ceiling test")
    ap.add_argument("--profile", type=int, default=0,
                    help="first profile a screen of N library models (cProfile, top functions "
                         "by cumulative time printed): where the time goes")
    args = ap.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; nothing to do", file=sys.stderr)
        return 0
    if not DATA.exists():
        print(f"bench_gpu: shared data not found at {DATA}; skipping", file=sys.stderr)
        return 0
    from difffit_screen.fit import FitParams
    from difffit_screen.maps import prepare_map, read_map

    device = torch.device(args.device)
    params = FitParams(seed=0, device=args.device)
    torch.zeros(1, device=device)
    prep = prepare_map(read_map(DATA / "domainfit_demo" / "density2.mrc"),
                       threshold=THRESHOLD, resolution=RESOLUTION)
    gpu_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu (script test)"
    rec = {"date": time.strftime("%Y-%m-%d %H:%M"), "gpu_name": gpu_name,
           "torch": torch.__version__, "cuda": torch.version.cuda, "cpu_count": os.cpu_count(),
           "host": platform.node(), "device": args.device, "params": asdict(params),
           "ceiling": measure_ceiling(prep, device, args.points)}
    print(json.dumps(rec["ceiling"]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every phase: a call cut short by its time box keeps the rest
        (out / "gpu.json").write_text(json.dumps(rec, indent=2, default=str))
        (out / "gpu.md").write_text(render_md(rec))

    save()
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        rec["profiled"] = run_screen(prep, params, device, args.profile)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
        save()
    if not args.skip_screen:
        rec["screen"] = run_screen(prep, params, device, args.limit)
        print(json.dumps(rec["screen"]), flush=True)
        save()
    if not args.skip_cli:
        rec["cli_walls"] = run_cli_case(args.device)
        save()
    print(render_md(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
