"""Identity-screening benchmark (issue "Core engine"): the PACRG paralogs among 490 decoys.

I7MLV6_D3, I7M317_D1 (the two PACRG paralogs, the right answers) and I7LV70_D1 (third domain)
are fitted into ``domainfit_demo/density2.mrc`` (threshold 0.886, resolution 4 Å) together with
the 490 full-length AlphaFold-DB models of ``library_tardigrade_afdb`` (pure decoys), through the
Python API that ``difffit-screen fit`` runs (``fit_candidates`` in chunks, ranked as
``run_fit`` ranks), at default
:class:`FitParams` unless ``--positions``/``--rotations``/``--iterations`` are given.

Recorded: the rank of each paralog, the score margin (worse paralog minus best decoy), time
per candidate, total wall time, peak RSS of this process (``resource.getrusage``), samples/s
from ``run.json``, the top-10 table, how many decoys were fitted / rejected / ``fit_ok``, and
the decoy score distribution.

Results: ``benchmarks/results/identity.json`` and ``identity.md`` (the ranked fits, before
significance, in ``benchmarks/results/identity/identity.parquet`` so the statistics can be
re-analysed without fitting again) (``--tag T`` writes
``identity_T.*``, e.g. for a reduced-placement run). Run from the repository root:
``.venv/bin/python benchmarks/bench_identity.py [--positions 6 --rotations 32 --tag reduced]``.
It exits cleanly (status 0, with a message) when the shared data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = SHARED / "data"
RESULTS = REPO / "benchmarks" / "results"
PARALOGS = ["I7MLV6_D3", "I7M317_D1"]
THIRD = "I7LV70_D1"
THRESHOLD = 0.886
RESOLUTION = 4.0


def split_library(files: list[str], out: Path) -> list[str]:
    """The library's models split into domains by ``difffit-screen domains`` (cached)."""
    import subprocess

    if not (out / "domains.parquet").exists():
        subprocess.run([sys.executable, "-m", "difffit_screen.cli", "domains", "--out", str(out),
                        *files], check=True)
    return sorted(str(p) for p in out.glob("*.cif"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--positions", type=int)
    ap.add_argument("--rotations", type=int)
    ap.add_argument("--iterations", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, help="use only the first N library models (testing)")
    ap.add_argument("--tag", default="", help="suffix of the result files (identity_TAG.*)")
    ap.add_argument("--library", choices=["full", "domains"], default="full",
                    help="domains: the 490 models split by `difffit-screen domains` (defaults); "
                         "results identity_domains.*")
    ap.add_argument("--reanalyse", action="store_true",
                    help="recompute the significance from the kept ranked fits (no fitting)")
    ap.add_argument("--chunk", type=int, default=40,
                    help="inputs per fit_candidates call; results are rewritten after each")
    args = ap.parse_args(argv)

    if not DATA.exists():
        print(f"bench_identity: shared data not found at {DATA}; skipping", file=sys.stderr)
        return 0

    import pyarrow.parquet as pq

    from difffit_screen.fit import FitParams, fit_candidates, iter_candidates
    from difffit_screen.maps import prepare_map, read_map
    from difffit_screen.outputs import software_versions
    from difffit_screen.significance import add_significance, read_null_summary
    from difffit_screen.tables import (
        FAILURES_SCHEMA,
        FITS_SCHEMA,
        rank_candidates,
        table_from_rows,
    )

    stem = "identity" + ("_domains" if args.library == "domains" else "")
    stem += f"_{args.tag}" if args.tag else ""
    if args.reanalyse:
        return reanalyse(stem)

    demo = DATA / "domainfit_demo"
    lib = DATA / "library_tardigrade_afdb"
    lib_files = sorted(str(p) for p in lib.glob("*.pdb.gz"))
    if args.limit:
        lib_files = lib_files[: args.limit]
    if args.library == "domains":
        lib_files = split_library(lib_files, RESULTS / "identity_domains_work")
    inputs = [str(demo / f"{n}.pdb") for n in [*PARALOGS, THIRD]] + lib_files

    params = FitParams(seed=args.seed)
    for k in ("positions", "rotations", "iterations"):
        if getattr(args, k) is not None:
            setattr(params, k, getattr(args, k))

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    prep = prepare_map(read_map(demo / "density2.mrc"), threshold=THRESHOLD,
                       resolution=RESOLUTION)
    # The candidates go through fit_candidates in chunks of --chunk inputs, so that partial
    # results are written as the run goes (the start placements depend only on the map and the
    # seed, and batching does not change the fits, so this equals one run_fit call); the
    # ranking is then built as run_fit builds it (rank_candidates + add_significance).
    all_fits: list[dict] = []
    all_failures: list[dict] = []
    per_cand: dict[str, float] = {}
    samples = 0
    search_s = 0.0
    for lo in range(0, len(inputs), args.chunk):
        part = fit_candidates(prep, iter_candidates(inputs[lo: lo + args.chunk], params),
                              params, progress=False)
        all_fits += part.fits
        all_failures += part.failures
        per_cand.update(part.seconds)
        samples += part.search_samples
        search_s += part.search_seconds
        done = min(len(inputs), lo + args.chunk)
        record = {"timing": {"total_s": time.perf_counter() - t0, "search_s": search_s,
                             "per_candidate_s": per_cand,
                             "samples_per_s": samples / max(search_s, 1e-9),
                             "search_samples": samples}, "versions": software_versions()}
        ranked = rank_candidates(table_from_rows(all_fits, FITS_SCHEMA))
        keep = RESULTS / "identity" / f"{stem}.parquet"  # for re-analysis of the statistics
        keep.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(ranked, keep)
        sig = add_significance(ranked)
        record["null"] = read_null_summary(sig)["description"]
        ranking = sig.to_pandas()
        failures = table_from_rows(all_failures, FAILURES_SCHEMA).to_pandas()
        summarise(args, params, inputs, lib_files, stem, prep, ranking, failures, record, t0,
                  cpu0, done)
        print(f"[{time.strftime('%H:%M:%S')}] {done}/{len(inputs)} inputs, "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return 0


TOP_COLUMNS = ["rank", "candidate", "score", "hits", "fit_ok", "inside_fraction", "mean_density",
               "correlation", "n_residues", "zscore", "qvalue"]


def significance_summary(ranking) -> dict:
    """The answers' q-values, the decoys with q < 0.05 and the top 10, from a ranking with
    significance."""
    q = dict(zip(ranking.candidate, ranking.qvalue, strict=True))
    decoys = ranking[~ranking.candidate.isin(PARALOGS)]
    cols = [c for c in TOP_COLUMNS if c in ranking.columns]
    return {"qvalues": {n: float(q[n]) for n in PARALOGS if n in q},
            "decoys_q05": int((decoys.qvalue < 0.05).sum()),
            "best_decoy_q": float(decoys.qvalue.min()) if len(decoys) else None,
            "top10": ranking[cols].head(10).to_dict(orient="records")}


def reanalyse(stem: str) -> int:
    """Recompute the significance of a finished run from its kept ranked fits."""
    import pyarrow.parquet as pq

    from difffit_screen.significance import add_significance, read_null_summary

    ranked = add_significance(pq.read_table(RESULTS / "identity" / f"{stem}.parquet"))
    path = RESULTS / f"{stem}.json"
    result = json.loads(path.read_text())
    result.update(significance_summary(ranked.to_pandas()))
    result["null"] = read_null_summary(ranked)["description"]
    path.write_text(json.dumps(result, indent=2, default=str))
    (RESULTS / f"{stem}.md").write_text(render_md(result))
    print(json.dumps({k: result[k] for k in ("ranks", "qvalues", "decoys_q05", "best_decoy_q")}))
    return 0


def summarise(args, params, inputs, lib_files, stem, prep, ranking, failures, record, t0, cpu0,
              done) -> None:
    import numpy as np
    import torch

    demo = DATA / "domainfit_demo"
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    names = list(ranking.candidate)
    ranks = {n: (names.index(n) + 1 if n in names else None) for n in [*PARALOGS, THIRD]}
    score = dict(zip(ranking.candidate, ranking.score, strict=True))
    decoys = ranking[~ranking.candidate.isin(PARALOGS)]
    lib_decoys = ranking[~ranking.candidate.isin([*PARALOGS, THIRD])]
    best_decoy = decoys.iloc[0] if len(decoys) else None
    worse_paralog = min((score[n] for n in PARALOGS if n in score), default=float("nan"))
    margin = (float(worse_paralog - best_decoy.score) if best_decoy is not None
              else float("nan"))
    ok_decoy_scores = lib_decoys[lib_decoys.fit_ok].score.to_numpy(dtype=float)
    all_decoy_scores = lib_decoys.score.to_numpy(dtype=float)

    def dist(a: np.ndarray) -> dict:
        a = a[np.isfinite(a)]
        if not len(a):
            return {"n": 0}
        q = np.percentile(a, [0, 5, 25, 50, 75, 95, 100])
        return {"n": len(a), "mean": float(a.mean()), "std": float(a.std()),
                **{f"p{p}": float(v) for p, v in zip([0, 5, 25, 50, 75, 95, 100], q,
                                                      strict=True)}}

    per_cand = record["timing"]["per_candidate_s"]
    times = np.array(list(per_cand.values()), float)
    fail_reasons: dict[str, int] = {}
    for r in failures.reason:
        key = "far bigger than the map" if "far bigger" in r else r[:80]
        fail_reasons[key] = fail_reasons.get(key, 0) + 1

    result = {
        "benchmark": "identity",
        "params": asdict(params),
        "map": {"path": str(demo / "density2.mrc"), "threshold": THRESHOLD,
                "resolution": RESOLUTION},
        "complete": done == len(inputs), "inputs_done": done,
        "n_inputs": len(inputs), "n_library": len(lib_files),
        "n_fitted": len(ranking), "n_failures": len(failures),
        "failure_reasons": fail_reasons,
        "ranks": ranks,
        "paralogs_rank_1_and_2": sorted(r for r in ranks.values() if r)[:2] == [1, 2]
        and {ranks[PARALOGS[0]], ranks[PARALOGS[1]]} == {1, 2},
        "scores": {n: float(score[n]) for n in [*PARALOGS, THIRD] if n in score},
        "best_decoy": None if best_decoy is None else {
            "candidate": best_decoy.candidate, "score": float(best_decoy.score),
            "fit_ok": bool(best_decoy.fit_ok)},
        "margin_worse_paralog_minus_best_decoy": margin,
        "library_decoys_fitted": len(lib_decoys),
        "library_decoys_fit_ok": int(lib_decoys.fit_ok.sum()),
        "library_decoy_scores_fit_ok": dist(ok_decoy_scores),
        "library_decoy_scores_all": dist(all_decoy_scores),
        **significance_summary(ranking),
        "timing": {"total_wall_s": wall, "cpu_s": cpu, "search_s": record["timing"]["search_s"],
                   "samples_per_s": record["timing"]["samples_per_s"],
                   "search_samples": record["timing"]["search_samples"],
                   "per_candidate_s_mean": float(times.mean()) if len(times) else None,
                   "per_candidate_s_median": float(np.median(times)) if len(times) else None,
                   "wall_per_input_s": wall / done,
                   "per_candidate_s": {n: per_cand[n] for n in [*PARALOGS, THIRD]
                                       if n in per_cand}},
        "peak_rss_mb": peak_kb / 1024.0,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "loadavg": list(os.getloadavg())},
        "versions": record["versions"],
        "null": record["null"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
    (RESULTS / f"{stem}.md").write_text(render_md(result))


def render_md(r: dict) -> str:
    p = r["params"]
    t = r["timing"]
    lines = [
        f"# Identity screening: PACRG paralogs among {r['n_library']} AlphaFold decoys",
        "",
        "" if r["complete"] else f"**PARTIAL: {r['inputs_done']} of {r['n_inputs']} inputs "
        "fitted so far (inputs in order: the 3 domains first, then the library).**",
        "",
        f"Map `domainfit_demo/density2.mrc`, threshold {r['map']['threshold']}, resolution "
        f"{r['map']['resolution']} Å. Inputs: I7MLV6_D3, I7M317_D1 (answers), I7LV70_D1 and "
        f"{r['n_library']} `library_tardigrade_afdb` models ({r['n_inputs']} in all).",
        f"Params: positions {p['positions']}, rotations {p['rotations']}, iterations "
        f"{p['iterations']}, max_search_atoms {p['max_search_atoms']}, refine_top "
        f"{p['refine_top']}, seed {p['seed']}, device {p['device']}.",
        "",
        "- ranks: " + ", ".join(f"{k} **{v}**" for k, v in r["ranks"].items()),
        f"- paralogs rank 1 and 2: **{r['paralogs_rank_1_and_2']}**",
        "- margin (worse paralog − best decoy): "
        f"**{r['margin_worse_paralog_minus_best_decoy']:.3f}**"
        f" (best decoy {r['best_decoy']['candidate'] if r['best_decoy'] else '-'}, score "
        f"{r['best_decoy']['score'] if r['best_decoy'] else float('nan'):.3f})",
        f"- fitted {r['n_fitted']}, failures {r['n_failures']} ({r['failure_reasons']})",
        f"- library decoys fitted {r['library_decoys_fitted']}, of which fit_ok "
        f"{r['library_decoys_fit_ok']}",
        f"- decoy score distribution (fit_ok): {fmt_dist(r['library_decoy_scores_fit_ok'])}",
        f"- decoy score distribution (all fitted): {fmt_dist(r['library_decoy_scores_all'])}",
        f"- time: total {t['total_wall_s']:.0f} s wall ({t['cpu_s']:.0f} s CPU), search "
        f"{t['search_s']:.0f} s, {t['wall_per_input_s']:.2f} s wall per input, per fitted "
        f"candidate mean {t['per_candidate_s_mean']:.2f} s / median "
        f"{t['per_candidate_s_median']:.2f} s; {t['samples_per_s']:.3g} samples/s",
        f"- peak RSS {r['peak_rss_mb']:.0f} MB; machine {r['machine']['cpus']} CPUs (shared), "
        f"torch threads {r['machine']['torch_threads']}, load at end {r['machine']['loadavg']}",
        "",
        "- q-values (Benjamini-Hochberg over the screen): "
        + ", ".join(f"{k} {v:.2g}" for k, v in r.get("qvalues", {}).items())
        + f"; decoys with q < 0.05: **{r.get('decoys_q05')}** (smallest decoy q "
        f"{r.get('best_decoy_q') or float('nan'):.2g})",
        f"- null: {r.get('null', '')}",
        "",
        "| rank | candidate | score | z | q | hits | fit_ok | inside | mean density | residues |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["top10"]:
        lines.append(f"| {row['rank']} | {row['candidate']} | {row['score']:.3f} | "
                     f"{row.get('zscore', float('nan')):.1f} | {row.get('qvalue', 1.0):.2g} | "
                     f"{row['hits']} | {row['fit_ok']} | {row['inside_fraction']:.2f} | "
                     f"{row['mean_density']:.3f} | {row.get('n_residues', '')} |")
    return "\n".join(lines) + "\n"


def fmt_dist(d: dict) -> str:
    if not d.get("n"):
        return "none"
    return (f"n {d['n']}, median {d['p50']:.3f}, p95 {d['p95']:.3f}, max {d['p100']:.3f}, "
            f"mean {d['mean']:.3f} ± {d['std']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
