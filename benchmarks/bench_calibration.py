"""Calibration benchmark (issue "Trustworthy significance"): every shared map, a fixed decoy set.

For each of the 9 maps of ``../shared/data`` a fixed set of 100 tardigrade AlphaFold models
(``library_tardigrade_afdb``, sorted by name, 100 evenly spaced: the same set every run; pure
decoys for every map) is fitted together with the map's known native chain(s), each moved to a
random pose (seed ``61 + k``), with default :class:`FitParams` (``seed`` 0) through
``fit_candidates`` and ranked and scored as ``difffit-screen fit`` does. ``--library domains``
uses the domain-split version of the same 100 models (``difffit-screen domains``, defaults)
instead.

Each candidate's search depends on the map and the candidate alone (the deeper search is
decided per candidate), so the decoy-only screen is the same run with the natives' rows
removed before the significance is computed (``tests/test_fit.py`` checks that a candidate
fitted alone or among others gets the same rows). Recorded per map: the natives' rank, score
and q; decoys with q < 0.05 with the natives present and in the decoy-only screen; the null
model; the time. Global null: Benjamini-Hochberg at 0.05 allows a false discovery in at most
about 5 % of decoy-only screens, so across 9 maps expect 0, rarely 1.

The per-candidate best fits are kept in ``results/calibration/<map>_<library>.parquet``, so
``--reanalyse`` recomputes the tables from them (the statistics only, in milliseconds).

Run from the repository root:
``.venv/bin/python benchmarks/bench_calibration.py [--maps a,b] [--library full|domains]``.
Results: ``benchmarks/results/calibration_<library>.json`` and ``.md``. Exits cleanly when the
shared data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
TABLES = RESULTS / "calibration"
N_DECOYS = 100

# name: (folder, map file, threshold (None: package default), resolution, kind,
#        natives: [(label, model file, chain or None)])
MAPS = {
    "demo_segment": ("domainfit_demo", "density2.mrc", 0.886, 4.0, "segment",
                     [("I7MLV6_D3", "I7MLV6_D3.pdb", None), ("I7M317_D1", "I7M317_D1.pdb", None)]),
    "emd5778_trpv1_segment": ("emd5778_trpv1_segmented_chain", "emd_5778_chain_seg.mrc", None,
                              3.27, "segment", [("trpv1", "5778_native_chain.pdb", None)]),
    "emd6374_segment": ("emd6374_segmented_chain", "emd_6374_chain_seg.mrc", None, 2.9,
                        "segment", [("6374D", "6374_native_chain.pdb", None)]),
    "emd5925_segment": ("emd5925_segmented_chain", "emd_5925_chain_seg.mrc", None, 4.0,
                        "segment", [("5925A", "5925_native_chain.pdb", None)]),
    "emd2513_frh_region": ("emd2513_frh_region", "emd_2513_frhABG_region.mrc", 0.113, 3.36,
                           "region of a complex", [("FrhA", "2513_native_chainA.pdb", None)]),
    "emd3488_haemoglobin": ("emd3488_haemoglobin", "emd_3488.mrc", 0.0863, 3.2,
                            "whole map (tetramer)",
                            [("hb_alpha", "5me2.pdb", "A"), ("hb_beta", "5me2.pdb", "B")]),
    "emd5168_factin": ("emd5168_factin", "emd_5168.mrc", 10.9, 6.6, "whole map (filament)",
                       [("actin_3MFP", "3MFP.pdb", None)]),
    "emd1080_groel": ("emd1080_groel_templates", "emd_1080_groel.mrc", 0.86, 11.5,
                      "whole map (14-mer)",
                      [("groel_1kp8A", "1kp8A_reference_pose_DERIVED.pdb", None)]),
    "emd1883_polii": ("emd1883_rnapolii", "emd_1883.mrc", 0.00102, 20.9,
                      "whole map (12 subunits, 20.9 Å)", [("rpb1", "1WCM_map_fitted.pdb", "A")]),
}


def decoy_files() -> list[Path]:
    """The fixed decoy set: 100 evenly spaced models of the library sorted by name."""
    files = sorted((DATA / "library_tardigrade_afdb").glob("*.pdb.gz"))
    pick = np.unique(np.round(np.linspace(0, len(files) - 1, N_DECOYS)).astype(int))
    return [files[i] for i in pick]


def domain_files(work: Path) -> list[Path]:
    """The decoys split into domains by ``difffit-screen domains`` (cached in ``work``)."""
    out = work / "decoy_domains"
    if not (out / "domains.parquet").exists():
        subprocess.run([sys.executable, "-m", "difffit_screen.cli", "domains", "--out", str(out),
                        *map(str, decoy_files())], check=True)
    return sorted(out.glob("*.cif"))


def native_candidates(folder: str, natives: list) -> list:
    """Each native chain moved to a random pose (seed 61 + k), as ``(name, source, Atoms)``."""
    from scipy.spatial.transform import Rotation

    from difffit_screen.structures import apply_matrix, read_structure

    out = []
    demo = REPO / "tests" / "data" / "demo_library"
    for k, (label, model, chain) in enumerate(natives):
        path = DATA / folder / model
        atoms = read_structure(path if path.exists() else demo / model, name=label)
        if chain:
            atoms = atoms.subset(atoms.chain == chain, name=label)
        rng = np.random.default_rng(61 + k)
        move = np.hstack([Rotation.random(random_state=rng).as_matrix(),
                          rng.uniform(-50, 50, size=(3, 1))])
        atoms.xyz = apply_matrix(atoms.xyz, move).astype(np.float32)
        atoms.source = f"{path.name}{':' + chain if chain else ''} moved (seed {61 + k})"
        out.append((label, atoms.source, atoms))
    return out


def fit_map(name: str, library: str, work: Path) -> dict:
    """Fit natives + decoys into one map; keep the best fit of each candidate as Parquet."""
    from difffit_screen.fit import FitParams, fit_candidates, iter_candidates
    from difffit_screen.maps import prepare_map, read_map
    from difffit_screen.tables import FITS_SCHEMA, rank_candidates, table_from_rows, write_table

    folder, map_file, thr, res, _, natives = MAPS[name]
    prep = prepare_map(read_map(DATA / folder / map_file), threshold=thr, resolution=res)
    files = decoy_files() if library == "full" else domain_files(work)
    params = FitParams(models=0)
    t0 = time.perf_counter()
    cands = native_candidates(folder, natives) + list(
        iter_candidates([str(f) for f in files], params))
    out = fit_candidates(prep, cands, params, progress=False)
    wall = time.perf_counter() - t0
    ranking = rank_candidates(table_from_rows(out.fits, FITS_SCHEMA))
    TABLES.mkdir(parents=True, exist_ok=True)
    write_table(ranking, TABLES / f"{name}_{library}.parquet")
    return {"wall_s": wall, "n_inputs": len(cands), "n_failures": len(out.failures),
            "threshold": prep.threshold, "resolution": prep.resolution,
            "search_s": out.search_seconds, "params": asdict(params),
            "n_deepened": int(sum(1 for r in out.fits if r["cluster_rank"] == 1
                                  and r["n_starts"] > params.positions * params.rotations))}


def add_confident_fraction(table, natives: list[str]):
    """Add ``confident_fraction`` (as ``fit`` now records it) to kept fits that predate it,
    from each decoy's source file; the natives are experimental structures (null)."""
    import pyarrow as pa

    from difffit_screen.domains.plddt import confident_fraction
    from difffit_screen.structures import read_structure

    values = []
    for name, source in zip(table.column("candidate").to_pylist(),
                            table.column("source").to_pylist(), strict=True):
        path = Path(str(source))
        values.append(None if name in natives or not path.exists()
                      else confident_fraction(read_structure(path, name=name)))
    return table.append_column("confident_fraction", pa.array(values, pa.float32()))


def analyse(name: str, library: str) -> dict:
    """Significance with and without the natives, from the kept best fits."""
    import pyarrow.parquet as pq

    from difffit_screen.significance import add_significance, fit_null_model

    table = pq.read_table(TABLES / f"{name}_{library}.parquet")
    labels = [n[0] for n in MAPS[name][5]]
    if "confident_fraction" not in table.column_names:  # kept fits from before the column
        table = add_confident_fraction(table, labels)
    full = add_significance(table).to_pandas()
    is_native = full.candidate.isin(labels)
    decoys = table.filter(np.asarray(~is_native.to_numpy()))
    decoy_only = add_significance(decoys).to_pandas()
    null = fit_null_model(table)
    natives = {}
    for lab in labels:
        row = full[full.candidate == lab]
        if len(row):
            r = row.iloc[0]
            natives[lab] = {"rank": int(r["rank"]), "score": float(r.score),
                            "qvalue": float(r.qvalue), "zscore": float(r.zscore)
                            if r.zscore == r.zscore else None, "hits": int(r.hits),
                            "n_starts": int(r.n_starts), "fit_ok": bool(r.fit_ok),
                            "inside_fraction": float(r.inside_fraction)}
        else:
            natives[lab] = {"rank": None, "qvalue": None}
    dec = full[~is_native]
    best = dec.iloc[0] if len(dec) else None
    return {
        "natives": natives,
        "decoys_q05_with_natives": int((dec.qvalue < 0.05).sum()),
        "decoys_q05_decoy_only": int((decoy_only.qvalue < 0.05).sum()),
        "min_q_decoy_only": float(decoy_only.qvalue.min()) if len(decoy_only) else None,
        "best_decoy": None if best is None else {"candidate": best.candidate,
                                                 "score": float(best.score),
                                                 "qvalue": float(best.qvalue)},
        "n_candidates": len(full), "null": null.describe(),
    }


KNOWN_HOMOLOGUES = {
    "A0A1D1VB57": "tardigrade HSP60 (chaperonin, 52 % sequence identity to E. coli GroEL): a "
                  "true homologue of the GroEL map's subunit, not a false discovery",
}
"""Library models that are real homologues of a map's native (found by sequence alignment)."""


def render_md(doc: dict) -> str:
    lines = [f"# Calibration: natives among {N_DECOYS} decoys "
             f"({doc['library']} models), every shared map", "",
             "Default settings, seed 0, natives moved to a random pose. q: Benjamini-Hochberg "
             "over the screen. Decoy-only: the same run without the natives' rows. "
             f"Machine: {doc['machine']['cpus']} CPU cores (shared with other work: times are "
             "upper bounds).", "",
             "| map | kind | native: rank, q | decoys q < 0.05 (with natives) | decoy-only "
             "discoveries (min q) | deepened | time (s) |", "|---|---|---|---|---|---|---|"]
    for name, r in doc["maps"].items():
        a = r.get("analysis")
        if not a:
            continue
        nat = "; ".join(f"{k} {v['rank']}, {v['qvalue']:.2g}" if v.get("rank") else f"{k} -"
                        for k, v in a["natives"].items())
        lines.append(f"| {name} | {MAPS[name][4]} | {nat} | {a['decoys_q05_with_natives']} | "
                     f"{a['decoys_q05_decoy_only']} ({a['min_q_decoy_only']:.2g}) | "
                     f"{r['fit'].get('n_deepened', '-')} | {r['fit']['wall_s']:.0f} |")
    found = {r["analysis"]["best_decoy"]["candidate"] for r in doc["maps"].values()
             if r.get("analysis") and r["analysis"].get("best_decoy")}
    notes = [f"- {k}: {v}" for k, v in KNOWN_HOMOLOGUES.items() if k in found]
    if notes:
        lines += ["", "Library models that are homologues of a native:", "", *notes]
    lines += ["", "Null per map:", ""]
    lines += [f"- {n}: {r['analysis']['null']}" for n, r in doc["maps"].items()
              if r.get("analysis")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--maps", help="comma-separated subset of: " + ",".join(MAPS))
    ap.add_argument("--library", choices=["full", "domains"], default="full")
    ap.add_argument("--reanalyse", action="store_true",
                    help="recompute the statistics from the kept fits (no fitting)")
    ap.add_argument("--work", default=str(RESULTS / "calibration"))
    args = ap.parse_args(argv)
    if not DATA.exists():
        print(f"bench_calibration: shared data not found at {DATA}; skipping", file=sys.stderr)
        return 0
    import torch

    from difffit_screen.outputs import software_versions

    names = args.maps.split(",") if args.maps else list(MAPS)
    out_json = RESULTS / f"calibration_{args.library}.json"
    doc = json.loads(out_json.read_text()) if out_json.exists() else {"maps": {}}
    doc.update({"benchmark": "calibration", "library": args.library, "n_decoys": N_DECOYS,
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                            "torch_threads": torch.get_num_threads(),
                            "loadavg": os.getloadavg()},
                "versions": software_versions()})
    for name in names:
        rec = doc["maps"].get(name, {})
        per_map = TABLES / f"{name}_{args.library}.json"
        if per_map.exists():
            rec = json.loads(per_map.read_text())
        kept = (TABLES / f"{name}_{args.library}.parquet").exists()
        if args.reanalyse and not kept:
            print(name, "no kept fits: skipped (run without --reanalyse to fit)", flush=True)
            continue
        if not args.reanalyse:
            rec["fit"] = fit_map(name, args.library, Path(args.work))
        rec["analysis"] = analyse(name, args.library)
        per_map.write_text(json.dumps(rec, indent=1, default=str))
        # several processes may run maps side by side: every map's record has its own file
        for other in MAPS:
            path = TABLES / f"{other}_{args.library}.json"
            if other != name and path.exists():
                doc["maps"][other] = json.loads(path.read_text())
        doc["maps"][name] = rec
        doc["maps"] = {k: doc["maps"][k] for k in MAPS if k in doc["maps"]}
        print(name, json.dumps(rec["analysis"]["natives"]),
              rec["analysis"]["decoys_q05_with_natives"],
              rec["analysis"]["decoys_q05_decoy_only"], f"{rec['fit']['wall_s']:.0f} s",
              flush=True)
        out_json.write_text(json.dumps(doc, indent=1, default=str))
        (RESULTS / f"calibration_{args.library}.md").write_text(render_md(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
