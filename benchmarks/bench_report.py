"""Benchmark of the HTML report at scale: a synthetic 100,000-row ranking.

The ranking is synthetic (names from a small vocabulary, 60 organisms, random scores), but its
top 10 rows are real: the two PACRG paralogs in their DERIVED poses in the DomainFit demo map and
eight demo decoys (``tests/data/demo_library``), so the top-hit section has real pictures and 3D
views. The report is built with ``write_report`` (map and contour given), then opened in headless
Chromium (offline: every host name resolves to nothing) and timed: page load, table ready (the
embedded table unpacked and its first page drawn), a search over all rows and a sort by score.

Writes ``benchmarks/results/report.json`` and ``report.md``. Run from the repository root:

    python benchmarks/bench_report.py [--rows 100000] [--top 10]
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from difffit_screen import __version__
from difffit_screen.annotations import row_annotation
from difffit_screen.report import write_report
from difffit_screen.structures import apply_matrix, read_structure
from difffit_screen.tables import FITS_SCHEMA, rank_candidates, table_from_rows, write_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from devtools import DevTools  # the browser tests' DevTools client

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tests" / "data" / "demo_library"
POSES = ROOT / "tests" / "data" / "reference_poses"
MAP = DEMO / "density2.mrc"
THRESHOLD = 0.886
RESULTS = ROOT / "benchmarks" / "results"
WORDS = ("kinase", "phosphatase", "transporter", "ribosomal protein", "dynein", "tubulin",
         "helicase", "synthase", "reductase", "binding protein", "channel", "receptor",
         "ubiquitin ligase", "chaperone", "protease")
GENERA = ("Homo", "Mus", "Danio", "Drosophila", "Arabidopsis", "Saccharomyces", "Escherichia",
          "Tetrahymena", "Chlamydomonas", "Plasmodium", "Trypanosoma", "Ramazzottius")
SPECIES = ("sapiens", "musculus", "rerio", "melanogaster", "thaliana")


def synthetic_rows(n: int, rng: np.random.Generator) -> list[dict]:
    """``n`` fits rows: 10 real demo models first (high scores), the rest synthetic."""
    rows = []
    for i, name in enumerate(("I7MLV6_D3", "I7M317_D1")):
        atoms = read_structure(DEMO / f"{name}.pdb")
        matrix = np.loadtxt(POSES / f"{name}_pose_DERIVED.transform.txt",
                            comments="#").reshape(12)
        rows.append(real_row(name, DEMO / f"{name}.pdb", atoms, matrix, 0.9 - 0.01 * i))
    centre = np.array([370.0, 230.0, 383.0])
    for k, path in enumerate(sorted((DEMO / "decoys").glob("*.pdb.gz"))[:8]):
        atoms = read_structure(path)
        rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        rot *= np.sign(np.linalg.det(rot))
        t = centre - rot @ atoms.xyz.mean(axis=0)
        rows.append(real_row(atoms.name, path, atoms, np.hstack([rot, t[:, None]]).ravel(),
                             0.8 - 0.01 * k))
    organisms = [f"{g} {s}" for g, s in itertools.product(GENERA, SPECIES)]
    scores = rng.normal(0.1, 0.05, n)
    for i in range(n - len(rows)):
        word = WORDS[i % len(WORDS)]
        rows.append({"candidate": f"SYN{i:07d}", "cluster_rank": 1,
                     "hits": int(rng.integers(1, 60)), "n_starts": 640,
                     "score": float(min(scores[i], 0.7)),
                     "mean_density": float(rng.uniform(0, 2)),
                     "inside_fraction": float(rng.uniform(0.05, 1)), "fit_ok": True,
                     "n_atoms": int(rng.integers(500, 20000)),
                     "n_residues": int(rng.integers(50, 2500)),
                     "name": f"Putative {word} {i % 997}", "gene": f"g{i % 5000}",
                     "organism": organisms[i % len(organisms)], "taxid": 1000 + i % 60,
                     "url": f"https://alphafold.ebi.ac.uk/entry/SYN{i:07d}",
                     "source": "", "seed": 0})
    return rows


def with_synthetic_significance(ranking):
    """z, p and q from the synthetic scores' own normal (``add_significance`` fits its size
    trend with an all-pairs Theil-Sen, quadratic in memory: 75 GB at 100,000 rows)."""
    import pyarrow as pa
    from scipy.special import ndtr

    from difffit_screen.significance import adjust_bh

    score = np.array([np.nan if v is None else v for v in ranking.column("score").to_pylist()])
    z = (score - 0.1) / 0.05
    p = 1.0 - ndtr(z)
    q = adjust_bh(p)
    for name, values in (("zscore", z), ("pvalue", p), ("qvalue", q)):
        i = ranking.column_names.index(name)
        ranking = ranking.set_column(i, ranking.schema.field(name), pa.array(values))
    return ranking


def real_row(name: str, path: Path, atoms, matrix: np.ndarray, score: float) -> dict:
    posed = apply_matrix(atoms.xyz, matrix)
    return {**row_annotation(atoms.meta), "candidate": name, "cluster_rank": 1, "hits": 50,
            "n_starts": 640, "score": score, "fit_ok": True, "inside_fraction": 0.9,
            "matrix": matrix, "translation": matrix.reshape(3, 4)[:, 3],
            "centroid_xyz": posed.mean(axis=0), "n_atoms": len(atoms),
            "n_residues": len(set(zip(atoms.chain, atoms.res_seq, strict=True))), "seed": 0,
            "source": str(path)}


def time_in_chromium(index: Path, browser: str) -> dict:
    """Open the report offline in headless Chromium; time load, table, search and sort."""
    profile = Path(tempfile.mkdtemp(prefix="bench-report-chromium-"))
    proc = subprocess.Popen(
        [browser, "--headless", "--no-sandbox", "--use-angle=swiftshader",
         "--enable-unsafe-swiftshader", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--disable-background-networking", "--no-first-run", f"--user-data-dir={profile}",
         "--remote-debugging-port=0", "--window-size=1280,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        while not (port_file.exists() and port_file.read_text().strip()):
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            target = next(t for t in json.load(r) if t.get("type") == "page")
        tools = DevTools(target["webSocketDebuggerUrl"], timeout=120.0, poll=0.02)
        tools.call("Page.enable")
        t0 = time.perf_counter()
        tools.call("Page.navigate", url=index.as_uri())
        tools.wait_for("location.href.startsWith('file:') && document.readyState === 'complete'")
        t_load = time.perf_counter() - t0
        tools.wait_for("document.getElementById('ranking').getAttribute('data-ready') === '1'")
        t_table = time.perf_counter() - t0
        in_page = tools.evaluate("({load: performance.getEntriesByType('navigation')[0]"
                                 ".loadEventEnd, table: window.difffitTableReadyMs})")
        status = "document.getElementById('ranking-status').textContent"
        t1 = time.perf_counter()
        tools.evaluate("(() => { const e = document.getElementById('ranking-search');"
                       " e.value = 'kinase 42'; e.dispatchEvent(new Event('input')); })()")
        tools.wait_for(f"{status}.includes('filtered')")
        t_search = time.perf_counter() - t1 - 0.12  # minus the input debounce
        found = tools.evaluate(status)
        t1 = time.perf_counter()
        tools.evaluate("(() => { const e = document.getElementById('ranking-search');"
                       " e.value = 'tubulin 7'; e.dispatchEvent(new Event('input')); })()")
        tools.wait_for(f"{status}.includes('filtered') && !{status}.includes('of 385 ')")
        t_search2 = time.perf_counter() - t1 - 0.12
        tools.evaluate("(() => { const e = document.getElementById('ranking-search');"
                       " e.value = ''; e.dispatchEvent(new Event('input')); })()")
        tools.wait_for(f"!{status}.includes('filtered')")
        t2 = time.perf_counter()
        tools.evaluate("document.querySelector('#ranking th[data-key=score]').click()")
        tools.wait_for("document.querySelector('#ranking th[data-key=score]')"
                       ".getAttribute('data-order') === 'asc'")
        t_sort = time.perf_counter() - t2
        heap = tools.evaluate("performance.memory ? performance.memory.usedJSHeapSize : null")
        version = tools.call("Browser.getVersion").get("product")
        tools.evaluate("document.getElementById('viewer-1').scrollIntoView()")
        viewer = tools.wait_for("['ready', 'error'].includes(document.getElementById('viewer-1')"
                                ".getAttribute('data-state')) && document.getElementById("
                                "'viewer-1').getAttribute('data-state')")
        viewer_ms = tools.evaluate("window.difffitViewers['1'] && "
                                   "window.difffitViewers['1'].readyMs")
        shot = tools.call("Page.captureScreenshot", format="png")
        (RESULTS / "report_bench_screenshot.png").write_bytes(base64.b64decode(shot["data"]))
        tools.ws.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)
    return {"browser": version, "load_s": round(t_load, 3), "table_ready_s": round(t_table, 3),
            "in_page_load_ms": in_page["load"], "in_page_table_ready_ms": in_page["table"],
            "search_s": round(max(t_search, 0.0), 3), "search_status": found,
            "search_again_s": round(max(t_search2, 0.0), 3), "viewer_1_ready_ms": viewer_ms,
            "sort_s": round(t_sort, 3), "js_heap_bytes": heap, "viewer_1": viewer}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--keep", help="keep the built results folder here")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-report-"))
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fits = table_from_rows(synthetic_rows(args.rows, rng), FITS_SCHEMA)
    write_table(fits, folder / "fits.parquet")
    ranking = with_synthetic_significance(rank_candidates(fits))
    write_table(ranking, folder / "ranking.parquet")
    t_tables = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = write_report(folder, map_path=MAP, threshold=THRESHOLD, top=args.top)
    t_build = time.perf_counter() - t0
    page = index.read_text()
    table_b64 = re.search(r'id="ranking-data">(.*?)</script>', page, flags=re.S).group(1)
    viewers = re.findall(r'<script type="application/json" id="viewer-data-\d+">(.*?)</script>',
                         page, flags=re.S)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    sizes = {"index_html_bytes": index.stat().st_size,
             "embedded_table_bytes": len(table_b64),
             "viewer_library_bytes": len((ROOT / "difffit_screen" / "vendor" /
                                          "3Dmol-min.js").read_bytes()),
             "viewer_payload_bytes": sum(len(v) for v in viewers),
             "n_viewers": len(viewers),
             "png_bytes": sum(len(i) for i in images), "n_png": len(images),
             "ranking_tsv_bytes": (index.parent / "ranking.tsv").stat().st_size,
             "ranking_parquet_bytes": (folder / "ranking.parquet").stat().st_size}
    browser = shutil.which("chromium") or shutil.which("google-chrome")
    timing = time_in_chromium(index, browser) if browser else {"browser": None}
    record = {"rows": args.rows, "top": args.top, "build_tables_s": round(t_tables, 2),
              "build_report_s": round(t_build, 2), **sizes, **timing,
              "version": __version__, "machine": platform.platform(),
              "cpus": os.cpu_count(), "load": os.getloadavg()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "report.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "report.md").write_text(render(record))
    print(render(record))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def render(r: dict) -> str:
    mb = 1 / 1e6
    lines = [
        "# Report benchmark (`bench_report.py`)", "",
        f"A synthetic ranking of **{r['rows']:,} candidates** (top {r['top']} real demo models "
        f"in the DomainFit demo map, the rest synthetic rows with names, organisms and links), "
        f"reported with `write_report` and opened offline in headless {r.get('browser')} "
        f"(software WebGL). Machine: {r['machine']}, {r['cpus']} CPUs, load "
        f"{', '.join(f'{x:.1f}' for x in r['load'])}.", "",
        "| measure | value |", "|---|---|",
        f"| index.html | **{r['index_html_bytes'] * mb:.1f} MB** |",
        f"| of which the full ranking (gzipped columnar JSON, base64) | "
        f"{r['embedded_table_bytes'] * mb:.2f} MB ({r['embedded_table_bytes'] / r['rows']:.1f}"
        f" bytes a row) |",
        f"| of which the 3D viewer library (3Dmol.js 2.5.5, once) | "
        f"{r['viewer_library_bytes'] * mb:.2f} MB |",
        f"| of which the {r['n_viewers']} 3D views (maps + backbones) | "
        f"{r['viewer_payload_bytes'] * mb:.2f} MB |",
        f"| of which the {r['n_png']} pictures (PNG, base64) | {r['png_bytes'] * mb:.2f} MB |",
        f"| ranking.tsv (every row, next to the page) | {r['ranking_tsv_bytes'] * mb:.1f} MB |",
        f"| ranking.parquet | {r['ranking_parquet_bytes'] * mb:.1f} MB |",
        f"| building the report (`write_report`) | {r['build_report_s']:.1f} s |",
    ]
    if r.get("browser"):
        lines += [
            f"| Chromium: page loaded | **{r['load_s']:.2f} s** "
            f"(load event at {r['in_page_load_ms']:.0f} ms) |",
            f"| Chromium: table unpacked, first page drawn | **{r['table_ready_s']:.2f} s** "
            f"(at {r['in_page_table_ready_ms']:.0f} ms in the page) |",
            f"| first search over all rows ('kinase 42'; builds the search index) | "
            f"{r['search_s']:.2f} s ({r['search_status']}) |",
            f"| next search ('tubulin 7') | {r['search_again_s']:.2f} s |",
            f"| sort all rows by score | {r['sort_s']:.2f} s |",
            f"| JS heap after load | {(r['js_heap_bytes'] or 0) * mb:.0f} MB |",
            f"| first 3D view (top hit, drawn after the table) | {r['viewer_1']} at "
            f"{(r['viewer_1_ready_ms'] or 0) / 1000:.1f} s in the page |",
        ]
    lines += ["", "Timings are wall-clock from the DevTools client (they include the protocol's "
              "round trips); the page draws one page of rows (50) whatever the number of rows.",
              "", "The ranking's z, p and q are the benchmark's own (the synthetic scores' "
              "normal), set before the report is built.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
