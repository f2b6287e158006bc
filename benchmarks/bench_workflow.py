"""Workflow benchmark: the Snakemake screen of the 3 DomainFit demo domains + 490 AlphaFold decoys.

Runs the real workflow (``snakemake --profile profiles/local``) in a scratch folder on
``density2.mrc`` (threshold 0.886, resolution 4 Å) against the demo domains and every model of
``../shared/data/library_tardigrade_afdb``, with the fit command's default search, and records
the wall time, the time per candidate, the peak memory of the jobs (Snakemake's per-job
``benchmark:`` files) and where the PACRG paralogs rank.

    python benchmarks/bench_workflow.py [--shards 4] [--workdir DIR]

Writes ``benchmarks/results/workflow.json`` and ``workflow.md``. Skips (exit 0) when
``../shared/data`` is absent.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PARALOGS = ("I7MLV6_D3", "I7M317_D1")


def write_config(path: Path, shards: int) -> None:
    """A screen config: demo map, demo domains and the 490-model AlphaFold library."""
    demo = SHARED / "domainfit_demo"
    path.write_text(json.dumps({
        "map": {"path": str(demo / "density2.mrc"), "threshold": 0.886, "resolution": 4.0},
        "library": {"name": "tardigrade490", "local": [
            str(demo / "I7MLV6_D3.pdb"), str(demo / "I7M317_D1.pdb"),
            str(demo / "I7LV70_D1.pdb"),
            str(SHARED / "library_tardigrade_afdb" / "*.pdb.gz")]},
        "shards": {"count": shards},
        "fit": {"seed": 0, "device": "auto"},
        "report": {"enabled": True, "top": 10},
    }, indent=2))


def job_memory(workdir: Path) -> dict[str, float]:
    """Peak RSS (MB) per job from Snakemake's benchmark files."""
    out = {}
    for tsv in sorted((workdir / "benchmarks").rglob("*.tsv")):
        with open(tsv) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if rows and rows[0].get("max_rss") not in (None, "", "NA", "-"):
            out[str(tsv.relative_to(workdir))] = float(rows[0]["max_rss"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    if not SHARED.exists():
        print(f"{SHARED} not found: skipping the workflow benchmark")
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="difffit_workflow_"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "screen.json"
    write_config(config, args.shards)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"),
           "--profile", str(ROOT / "profiles" / "local"), "--directory", str(workdir),
           "--configfile", str(config)]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (workdir / "snakemake.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print(proc.stderr[-4000:])
        return proc.returncode
    import pyarrow.parquet as pq

    ranking = pq.read_table(workdir / "results" / "ranking.parquet").to_pylist()
    failures = pq.read_table(workdir / "results" / "failures.parquet").to_pylist()
    ranks = {r["candidate"]: r["rank"] for r in ranking}
    decoys = [r for r in ranking if r["candidate"] not in (*PARALOGS, "I7LV70_D1")]
    memory = job_memory(workdir)
    n_inputs = len(ranking) + len(failures)
    result = {
        "inputs": n_inputs, "ranked": len(ranking), "failures": len(failures),
        "shards": args.shards, "wall_s": round(wall, 1),
        "wall_per_candidate_s": round(wall / max(n_inputs, 1), 2),
        "paralog_ranks": {p: ranks.get(p) for p in PARALOGS},
        "best_decoy": {"candidate": decoys[0]["candidate"], "score": decoys[0]["score"]}
        if decoys else None,
        "paralog_qvalues": {r["candidate"]: r["qvalue"] for r in ranking
                            if r["candidate"] in PARALOGS},
        "peak_job_rss_mb": max(memory.values()) if memory else None,
        "job_rss_mb": memory,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "workdir": str(workdir),
    }
    res = ROOT / "benchmarks" / "results"
    (res / "workflow.json").write_text(json.dumps(result, indent=2))
    (res / "workflow.md").write_text(
        "# Workflow benchmark (snakemake --profile profiles/local)\n\n"
        f"3 demo domains + 490 AlphaFold decoys, {args.shards} shards, default search, "
        f"{result['machine']}, no GPU.\n\n"
        "| inputs | ranked | failures | wall (s) | wall per candidate (s) | paralog ranks | "
        "peak job RSS (MB) |\n|---|---|---|---|---|---|---|\n"
        f"| {n_inputs} | {len(ranking)} | {len(failures)} | {result['wall_s']} | "
        f"{result['wall_per_candidate_s']} | "
        f"{', '.join(f'{p} {r}' for p, r in result['paralog_ranks'].items())} | "
        f"{result['peak_job_rss_mb']} |\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
