"""Library throughput benchmark (issue "Performance"): seconds per candidate of one ``fit`` run.

The issue's library case: the 33-candidate demo library (the three DomainFit demo domains and
the 30 tardigrade decoys shipped in ``tests/data/demo_library``) plus 60 models of the shared
tardigrade library (sorted by name, every 8th), 93 inputs in one ``difffit-screen fit`` call on
the demo map, default settings, CPU only. Timed end to end (process start to exit: start-up,
reading, search, scoring, writing) with wall and CPU time from the OS, and the tool's own
``run.json`` timing; the paralogs' ranks and q are recorded so that a faster run that loses
them shows.

``--baseline PATH`` runs another checkout of the package (its ``difffit_screen`` imported via
``PYTHONPATH``) alternately with this one, ``--repeats`` times each, so that old and new are
compared in one run on the same machine state (the ratio is the quoted figure; absolute times
on this shared 2-core machine drift from day to day).

Run from the repository root: ``.venv/bin/python benchmarks/bench_library.py [--baseline
PATH] [--repeats 2] [--threads N]``. Results: ``benchmarks/results/library.json`` and ``.md``.
Exits cleanly when the shared data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DEMO = REPO / "tests" / "data" / "demo_library"
RESULTS = REPO / "benchmarks" / "results"
PARALOGS = ("I7MLV6_D3", "I7M317_D1")


def inputs() -> list[Path]:
    """The 93 inputs: 3 demo domains, 30 shipped decoys, 60 shared tardigrade models."""
    shared = sorted((DATA / "library_tardigrade_afdb").glob("*.pdb.gz"))[::8][:60]
    return sorted(DEMO.glob("*.pdb")) + sorted((DEMO / "decoys").glob("*.pdb.gz")) + shared


def run_once(package: Path, files: list[Path], threads: int | None) -> dict:
    """One ``fit`` call with ``package`` first on the path; timings, ranks and q."""
    import pyarrow.parquet as pq

    env = dict(os.environ, PYTHONPATH=str(package), CUDA_VISIBLE_DEVICES="")
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    with tempfile.TemporaryDirectory(prefix="bench_library_") as tmp:
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "difffit_screen.cli", "fit", "--map",
               str(DEMO / "density2.mrc"), "--threshold", "0.886", "--resolution", "4",
               "--out", str(out), *map(str, files)]
        m = peers.run_measured(cmd, env=env, cwd=tmp)
        res = {k: m[k] for k in ("returncode", "wall_s", "cpu_s", "peak_rss_mb")}
        if m["returncode"] != 0:
            res["error"] = (m["stderr"] or m["stdout"])[-2000:]
            return res
        run = json.loads((out / "run.json").read_text())
        ranking = pq.read_table(out / "ranking.parquet").to_pylist()
    res["n_inputs"] = len(files)
    res["s_per_candidate"] = res["wall_s"] / len(files)
    res["cpu_s_per_candidate"] = res["cpu_s"] / len(files)
    res["run_json_timing"] = run.get("timing", {})
    res["paralogs"] = {r["candidate"]: {"rank": r["rank"], "qvalue": r["qvalue"],
                                        "score": r["score"]}
                       for r in ranking if r["candidate"] in PARALOGS}
    best = next((r for r in ranking if r["candidate"] not in PARALOGS), None)
    res["best_other"] = None if best is None else {"candidate": best["candidate"],
                                                   "score": best["score"],
                                                   "qvalue": best["qvalue"]}
    return res


def render_md(doc: dict) -> str:
    lines = ["# Library throughput (`bench_library.py`)", "",
             f"{doc['n_inputs']} inputs (the 33-candidate demo library and 60 tardigrade "
             "models) in one `difffit-screen fit` call on the demo map, default settings, CPU, "
             f"threads: {doc['threads'] or 'default'}; machine {doc['machine']['cpus']} CPUs. "
             "Runs alternate between the versions; wall and CPU time of the whole process.",
             "", "| version | run | wall (s) | s per candidate | CPU (s) | CPU s per candidate "
             "| peak RSS (MB) | paralogs: rank, q | best other (score, q) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        if r.get("returncode"):
            lines.append(f"| {r['version']} | {r['repeat']} | failed | | | | | | |")
            continue
        par = "; ".join(f"{k} {v['rank']}, {v['qvalue']:.1e}" for k, v in
                        sorted(r["paralogs"].items()))
        best = r["best_other"]
        lines.append(f"| {r['version']} | {r['repeat']} | {r['wall_s']:.1f} | "
                     f"**{r['s_per_candidate']:.2f}** | {r['cpu_s']:.1f} | "
                     f"{r['cpu_s_per_candidate']:.2f} | {r['peak_rss_mb']:.0f} | {par} | "
                     f"{best['candidate']} {best['score']:.3f}, {best['qvalue']:.2g} |")
    if doc.get("ratio_wall"):
        lines += ["", f"Baseline / this version, slower run of each: wall "
                      f"**{doc['ratio_wall']:.2f}x**, CPU {doc['ratio_cpu']:.2f}x."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", help="another checkout of the repository to compare with")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, help="OMP threads (default: all cores)")
    ap.add_argument("--out", default=str(RESULTS / "library"))
    args = ap.parse_args(argv)
    if not DATA.exists():
        print(f"bench_library: shared data not found at {DATA}; skipping", file=sys.stderr)
        return 0
    files = inputs()
    versions = {"this": REPO}
    if args.baseline:
        versions["baseline"] = Path(args.baseline).resolve()
    runs = []
    for k in range(args.repeats):
        for name, path in versions.items():
            r = run_once(path, files, args.threads)
            r.update(version=name, repeat=k + 1, package=str(path))
            runs.append(r)
            print(name, k + 1, f"{r.get('wall_s', float('nan')):.1f} s",
                  json.dumps(r.get("paralogs")), flush=True)
    doc = {"benchmark": "library", "n_inputs": len(files), "threads": args.threads,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "loadavg": os.getloadavg()}, "runs": runs}
    ok = [r for r in runs if not r.get("returncode")]
    if args.baseline and ok:
        slow = {v: max((r for r in ok if r["version"] == v), key=lambda r: r["wall_s"])
                for v in versions if any(r["version"] == v for r in ok)}
        if len(slow) == 2:
            doc["ratio_wall"] = slow["baseline"]["wall_s"] / slow["this"]["wall_s"]
            doc["ratio_cpu"] = slow["baseline"]["cpu_s"] / slow["this"]["cpu_s"]
    Path(args.out + ".json").write_text(json.dumps(doc, indent=1, default=str))
    Path(args.out + ".md").write_text(render_md(doc))
    print(render_md(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
