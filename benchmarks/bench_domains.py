"""Benchmark of library preparation: trim + split the 490 AlphaFold DB models of the tardigrade
library (``../shared/data/library_tardigrade_afdb``) into domains, structure route (AFDB v2 files
come without PAE here).

Writes ``benchmarks/results/domains.json`` (counts, size distribution, timing, per-model rows) and
``benchmarks/results/domains.md`` (a short summary). Run from the repository root:

    python benchmarks/bench_domains.py [--library DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from difffit_screen import __version__
from difffit_screen.domains import (
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    DEFAULT_NCUT_MAX,
    DEFAULT_PLDDT_MIN,
    index_residues,
    load_model,
    split_domains,
    summarize_domains,
)

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT.parent / "shared" / "data" / "library_tardigrade_afdb"
RESULTS = ROOT / "benchmarks" / "results"


def run_library(files: list[Path]) -> tuple[list[dict], float, float]:
    """Split every model; return per-model rows, seconds reading and seconds splitting."""
    rows, t_read, t_split = [], 0.0, 0.0
    for path in files:
        t0 = time.perf_counter()
        atoms = load_model(path)
        t1 = time.perf_counter()
        error = ""
        try:
            doms = split_domains(atoms)
        except Exception as exc:  # a benchmark records every failure
            doms, error = [], f"{type(exc).__name__}: {exc}"
        t2 = time.perf_counter()
        t_read += t1 - t0
        t_split += t2 - t1
        res = index_residues(atoms)
        rows.append({
            "model": atoms.name, "n_residues": len(res),
            "n_confident": int((res.plddt >= DEFAULT_PLDDT_MIN).sum()),
            "n_domains": len(doms), "sizes": [d.meta["n_residues"] for d in doms],
            "ranges": [d.meta["residue_ranges"] for d in doms],
            "pieces": [d.meta["n_pieces"] for d in doms],
            "seconds": round(t2 - t1, 4), "error": error,
        })
    return rows, t_read, t_split


def write_markdown(result: dict, path: Path) -> None:
    """Write the short markdown summary."""
    s = result["summary"]
    hist = " | ".join(f"{k}: {v}" for k, v in s["domains_per_model"].items())
    lines = [
        "# Domain splitting benchmark (tardigrade AFDB library)",
        "",
        f"- models: {s['models']}, failures: {s['failed']}, models with no domain left "
        f"(all residues below pLDDT {DEFAULT_PLDDT_MIN:g} or every confident part < "
        f"{DEFAULT_MIN_SIZE} residues): {result['models_without_domains']}",
        f"- domains: {s['domains']}; residues per domain min {s['size_min']}, "
        f"quartiles {s['size_quartiles'][0]:g} / {s['size_median']:g} / {s['size_quartiles'][1]:g},"
        f" max {s['size_max']}",
        f"- discontinuous domains (interrupted by another domain, not only by trimmed or missing "
        f"residues): {result['discontinuous_domains']}",
        f"- domains per model (count: models): {hist}",
        f"- residues kept (pLDDT >= {DEFAULT_PLDDT_MIN:g}, in domains): "
        f"{result['residues_in_domains']} of {result['residues_total']}",
        f"- time: {result['seconds_split']:.1f} s splitting + {result['seconds_read']:.1f} s "
        f"reading = {result['seconds_per_100_models']:.2f} s per 100 models (split only: "
        f"{result['split_seconds_per_100_models']:.2f} s); slowest model "
        f"{result['slowest_model']} ({result['slowest_seconds']:.2f} s)",
        f"- parameters: min_size {DEFAULT_MIN_SIZE}, max_size {DEFAULT_MAX_SIZE}, "
        f"ncut_max {DEFAULT_NCUT_MAX}, plddt_min {DEFAULT_PLDDT_MIN:g}, structure route (no PAE)",
        f"- machine: {result['machine']}, difffit_screen {result['version']}",
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, default=LIBRARY)
    parser.add_argument("--limit", type=int, default=0, help="only the first N models")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    files = sorted(args.library.glob("*.pdb.gz"))
    if args.limit:
        files = files[: args.limit]
    if not files:
        parser.error(f"no *.pdb.gz in {args.library}")
    rows, t_read, t_split = run_library(files)
    sizes = [s for r in rows for s in r["sizes"]]
    failed = sum(bool(r["error"]) for r in rows)
    summary = summarize_domains(len(rows), [r["n_domains"] for r in rows if not r["error"]],
                                sizes, failed)
    slow = max(rows, key=lambda r: r["seconds"])
    result = {
        "summary": summary,
        "models_without_domains": sum(r["n_domains"] == 0 and not r["error"] for r in rows),
        "discontinuous_domains": sum(p > 1 for r in rows for p in r["pieces"]),
        "residues_total": int(sum(r["n_residues"] for r in rows)),
        "residues_in_domains": int(sum(sizes)),
        "seconds_read": round(t_read, 3), "seconds_split": round(t_split, 3),
        "seconds_per_100_models": round(100 * (t_read + t_split) / len(rows), 3),
        "split_seconds_per_100_models": round(100 * t_split / len(rows), 3),
        "median_split_seconds": float(np.median([r["seconds"] for r in rows])),
        "slowest_model": slow["model"], "slowest_seconds": slow["seconds"],
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "version": __version__,
        "parameters": {"min_size": DEFAULT_MIN_SIZE, "max_size": DEFAULT_MAX_SIZE,
                       "ncut_max": DEFAULT_NCUT_MAX, "plddt_min": DEFAULT_PLDDT_MIN},
        "models": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "domains.json").write_text(json.dumps(result, indent=1) + "\n")
    write_markdown(result, args.out / "domains.md")
    print((args.out / "domains.md").read_text())
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
