"""Memory benchmark: a large candidate and many placements stay within a workstation's memory.

Fits the 12-subunit RNA polymerase II model (1WCM, 30,936 heavy atoms) into EMD-1883 with
10,240 start placements (40 positions x 256 rotations), and records peak RSS and time. The
search is chunked by ``--max-samples`` atom samples, the refinement and scores use all atoms.
Few iterations are enough here: the benchmark measures memory, not fit quality.

    python benchmarks/bench_memory.py [--iterations 10] [--copies 2]

``--copies 2`` fits two copies of 1WCM side by side (30 Å apart along x, 61,872 atoms: the
"50k-atom candidate" case; a memory test, the pair has no right pose). Writes
``benchmarks/results/memory.json`` and ``memory.md`` (one row per case, the latest run of each
case kept).
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
    ap.add_argument("--copies", type=int, default=1,
                    help="copies of 1WCM side by side in one candidate (2: 61,872 atoms)")
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
    model = case / "1WCM_map_fitted.pdb"
    label = "emd1883_rnapolii / 1WCM (all 12 chains)"
    if args.copies > 1:
        model = write_copies(model, args.copies, out.parent / "memory_copies.cif")
        label = f"emd1883_rnapolii / {args.copies} copies of 1WCM side by side"
    outcome, record = run_fit(prep, [str(model)], out, params, progress=False)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "case": label,
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
    old = json.loads((res / "memory.json").read_text()) if (res / "memory.json").exists() else []
    rows = [r for r in (old if isinstance(old, list) else [old]) if r["case"] != label]
    rows.append(result)
    (res / "memory.json").write_text(json.dumps(rows, indent=2))
    (res / "memory.md").write_text(
        "| candidate | atoms | placements | iterations | peak RSS (MB) | wall (s) | samples/s |\n"
        "|---|---|---|---|---|---|---|\n" + "".join(
            f"| {r['case']} | {r['n_atoms']} | {r['placements']} | {r['iterations']} | "
            f"{r['peak_rss_mb']} | {r['wall_s']} | {r['samples_per_s']} |\n" for r in rows))
    print(json.dumps(result, indent=2))
    return 0


def write_copies(model: Path, copies: int, path: Path) -> Path:
    """``copies`` of ``model`` side by side, 30 Å apart along x, as one mmCIF (chains renamed)."""
    import gemmi

    st = gemmi.read_structure(str(model))
    st.setup_entities()
    base = st[0]
    merged = gemmi.Model("1")
    for k in range(copies):
        for chain in base:
            c = gemmi.Chain(f"{chain.name}{k}")
            for res in chain:
                r = res.clone()
                for atom in r:
                    atom.pos = gemmi.Position(atom.pos.x + 30.0 * k, atom.pos.y, atom.pos.z)
                c.add_residue(r)
            merged.add_chain(c)
    out = gemmi.Structure()
    out.cell, out.spacegroup_hm = st.cell, st.spacegroup_hm
    out.add_model(merged)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.make_mmcif_document().write_file(str(path))
    return path


if __name__ == "__main__":
    raise SystemExit(main())
