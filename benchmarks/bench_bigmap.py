"""Big-box benchmark (issue "Performance toward the limit"): a map in a 400³ box costs what its
density costs.

The DomainFit demo map (``density2.mrc``, 47 x 34 x 40 voxels of 1.37 Å) is zero-padded,
centred, into a 400 x 400 x 400 box (the same density, 1,000 times the voxels: what a whole-
complex map around a small segment looks like). Both maps are prepared (threshold 0.886,
resolution 4 Å) and the three demo domains are fitted into each at default settings, in one
process, alternating (small, big, small, big) so that machine noise hits both alike.

Recorded: preparation time and the peak RSS growth of preparing the big map, the loss volume's
shape for each, seconds per candidate for each (and their ratio, target ≤ 1.5), and whether
the two maps give the same poses (the crop keeps the loss volume identical around the density).

Run from the repository root: ``.venv/bin/python benchmarks/bench_bigmap.py``. Results:
``benchmarks/results/bigmap.json`` and ``bigmap.md``. Exits cleanly without the shared data.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DIFFFIT_SCREEN_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"
DOMAINS = ["I7MLV6_D3", "I7M317_D1", "I7LV70_D1"]
BOX = 400


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def pad_into_box(dmap, box: int):
    """``dmap`` zero-padded, centred, into a ``box``³ grid (same voxel size and world frame)."""
    from difffit_screen.maps import DensityMap

    shape = np.array(dmap.data.shape)
    before = (box - shape) // 2
    data = np.zeros((box, box, box), np.float32)
    data[tuple(slice(b, b + s) for b, s in zip(before, shape, strict=True))] = dmap.data
    return DensityMap(data, dmap.voxel_size, dmap.origin - before[::-1] * dmap.voxel_size)


def fit_once(prep, files, params) -> tuple[float, dict]:
    from difffit_screen.fit import fit_candidates, iter_candidates

    t0 = time.perf_counter()
    out = fit_candidates(prep, iter_candidates(files, params), params, progress=False)
    wall = time.perf_counter() - t0
    best = {r["candidate"]: np.asarray(r["matrix"]) for r in out.fits if r["cluster_rank"] == 1}
    return wall / len(files), best


def main() -> int:
    demo = DATA / "domainfit_demo"
    if not demo.exists():
        print(f"bench_bigmap: shared data not found at {DATA}; skipping", file=sys.stderr)
        return 0
    import torch

    from difffit_screen.fit import FitParams
    from difffit_screen.maps import prepare_map, read_map

    small = read_map(demo / "density2.mrc")
    kw = {"threshold": 0.886, "resolution": 4.0}
    prep_small = prepare_map(small, **kw)
    rss0 = peak_rss_mb()
    big = pad_into_box(small, BOX)
    t0 = time.perf_counter()
    prep_big = prepare_map(big, **kw)
    prep_s = time.perf_counter() - t0
    rss_big = peak_rss_mb() - rss0
    files = [str(demo / f"{d}.pdb") for d in DOMAINS]
    params = FitParams(seed=0, device="cpu")
    times = {"small": [], "big": []}
    poses = {}
    for _rep in range(2):
        for label, prep in (("small", prep_small), ("big", prep_big)):
            per, best = fit_once(prep, files, params)
            times[label].append(per)
            poses[label] = best
    shift = {d: float(np.abs(poses["small"][d] - poses["big"][d]).max()) for d in poses["small"]}
    rec = {
        "box": BOX, "map_shape": list(small.data.shape), "big_shape": list(big.data.shape),
        "loss_shape_small": list(prep_small.loss_volume.data.shape),
        "loss_shape_big": list(prep_big.loss_volume.data.shape),
        "prepare_big_s": prep_s, "prepare_big_peak_rss_growth_mb": rss_big,
        "peak_rss_mb": peak_rss_mb(),
        "s_per_candidate_small": times["small"], "s_per_candidate_big": times["big"],
        "ratio_big_over_small": min(times["big"]) / min(times["small"]),
        "max_matrix_difference": shift, "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "loadavg": list(os.getloadavg()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bigmap.json").write_text(json.dumps(rec, indent=2))
    md = (f"# Big box: the demo map in a {BOX}³ box\n\n"
          f"- loss volume: {rec['loss_shape_small']} (map as given) vs {rec['loss_shape_big']} "
          f"({BOX}³ box, cropped)\n"
          f"- preparing the {BOX}³ map: {prep_s:.1f} s, peak RSS growth "
          f"{rss_big:.0f} MB (process peak {rec['peak_rss_mb']:.0f} MB)\n"
          f"- seconds per candidate (3 demo domains, defaults, 2 runs each, alternating): map "
          f"as given {', '.join(f'{t:.2f}' for t in times['small'])}; {BOX}³ box "
          f"{', '.join(f'{t:.2f}' for t in times['big'])}; ratio (best of each) "
          f"**{rec['ratio_big_over_small']:.2f}** (target ≤ 1.5)\n"
          f"- same poses: largest matrix difference per domain "
          f"{', '.join(f'{k} {v:.1e}' for k, v in shift.items())}\n"
          f"- machine: {rec['cpus']} CPUs, torch threads {rec['torch_threads']}, load "
          f"{', '.join(f'{x:.1f}' for x in rec['loadavg'])}\n")
    (RESULTS / "bigmap.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
