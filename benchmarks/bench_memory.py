"""Memory benchmark: a large candidate and many placements stay within a workstation's memory.

Fits the 12-subunit RNA polymerase II model (1WCM, 30,936 heavy atoms) into EMD-1883 with
10,240 start placements (40 positions x 256 rotations), and records peak RSS and time. The
search is chunked by ``--max-samples`` atom samples, the refinement and scores use all atoms.
Few iterations are enough here: the benchmark measures memory, not fit quality.

    python benchmarks/bench_memory.py [--iterations 10]

Writes ``benchmarks/results/memory.json`` and ``memory.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--positions", type=int, default=40)
    ap.add_argument("--rotations", type=int, default=256)
    ap.add_argument("--max-samples", type=int, default=3_000_000)
    args = ap.parse_args()
    case = SHARED / "emd1883_rnapolii"
    if not case.exists():
        print(f"{case} not found: skipping the memory benchmark")
        return 0
    from difffit_screen.fit import FitParams, run_fit
    from difffit_screen.maps import prepare_map, read_map

    params = FitParams(positions=args.positions, rotations=args.rotations,
                       iterations=args.iterations, max_samples=args.max_samples, models=0)
    t0 = time.perf_counter()
    prep = prepare_map(read_map(case / "emd_1883.mrc"), threshold=0.00102, resolution=20.9)
    out = ROOT / "benchmarks" / "results" / "memory_run"
    outcome, record = run_fit(prep, [str(case / "1WCM_map_fitted.pdb")], out, params,
                              progress=False)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "case": "emd1883_rnapolii / 1WCM (all 12 chains)",
        "n_atoms": outcome.fits[0]["n_atoms"] if outcome.fits else None,
        "placements": args.positions * args.rotations,
        "iterations": args.iterations,
        "max_samples": args.max_samples,
        "peak_rss_mb": round(peak_mb, 1),
        "wall_s": round(wall, 1),
        "samples_per_s": round(record["timing"]["samples_per_s"]),
        "machine": f"{platform.machine()}, {resource.getpagesize()} B pages",
        "device": record["device"],
    }
    res = ROOT / "benchmarks" / "results"
    (res / "memory.json").write_text(json.dumps(result, indent=2))
    (res / "memory.md").write_text(
        "| candidate | atoms | placements | iterations | peak RSS (MB) | wall (s) | samples/s |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {result['case']} | {result['n_atoms']} | {result['placements']} | "
        f"{args.iterations} | {result['peak_rss_mb']} | {result['wall_s']} | "
        f"{result['samples_per_s']} |\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
