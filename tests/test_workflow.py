"""The Snakemake workflow: helpers, lint, config validation, profiles and real runs.

The end-to-end tests run the real workflow with ``snakemake`` in a subprocess (``--cores 2``,
``--directory tmp_path``, ``--configfile``) on a tiny screen: a few local files of the demo
library (plus an empty, unreadable one) and AlphaFold DB accessions served by the loopback
fixture server (one of them unknown: a 404), with few placements so that a run takes well under
a minute on 2 cores.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from difffit_screen import workflow_helpers as wh

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
DEMO = REPO / "tests" / "data" / "demo_library"
PACRG = ("I7MLV6_D3", "I7M317_D1")
DECOYS = ("A0A1D1UJQ1", "A0A1D1V7X6", "A0A1D1W993")
AFDB_OK = "A0A1D1VEJ5"          # served by the fixture server
AFDB_MISSING = "A0A0A0Z404"     # not served: a 404
TINY_FIT = {"positions": 4, "rotations": 8, "iterations": 30, "seed": 0, "device": "auto",
            "extra": "--refine-top 1 --refine-iterations 10 --models 0"}


# --- helpers ---------------------------------------------------------------------------------

def snakemake_env(extra_path: Path | None = None) -> dict[str, str]:
    """Environment of a snakemake subprocess: this venv's bin first (difffit-screen, python)."""
    env = dict(os.environ)
    path = [str(Path(sys.executable).parent), env.get("PATH", "")]
    if extra_path is not None:
        path.insert(0, str(extra_path))
    env["PATH"] = os.pathsep.join(path)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_snakemake(workdir: Path, configfile: Path | None, *args: str, check: bool = True,
                  env: dict | None = None, timeout: float = 600,
                  workflow_profile: str | None = "none") -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir``; returns the completed process (stdout+stderr merged).

    ``workflow_profile`` None uses the workflow's own (workflow/profiles/default).
    """
    wp = ["--workflow-profile", workflow_profile] if workflow_profile else []
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
           "--directory", str(workdir), "--cores", "2", *wp, *args,
           "--set-threads", "fit_shard=1"]  # last: it takes several values
    if configfile is not None:
        cmd[3:3] = ["--configfile", str(configfile)]
    proc = subprocess.run(cmd, cwd=workdir, env=env or snakemake_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if check and proc.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}"
                         for p in sorted(workdir.rglob("*.log")) if ".snakemake" not in str(p))
        pytest.fail(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{logs}")
    return proc


def jobs_run(output: str, rule: str) -> list[str]:
    """Wildcards (or '' ) of the jobs of ``rule`` that a snakemake run started, in order."""
    lines = output.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.strip() in (f"rule {rule}:", f"localrule {rule}:"):
            wildcards = ""
            for follow in lines[i + 1:i + 12]:
                if follow.strip().startswith("wildcards:"):
                    wildcards = follow.split(":", 1)[1].strip()
                    break
            found.append(wildcards)
    return found


def make_library(root: Path, decoys=DECOYS, bad: bool = True) -> Path:
    """A local library folder: the two PACRG domains, some decoys and an empty .pdb."""
    lib = root / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    for name in PACRG:
        shutil.copy(DEMO / f"{name}.pdb", lib)
    for name in decoys:
        shutil.copy(DEMO / "decoys" / f"{name}.pdb.gz", lib)
    if bad:
        (lib / "broken.pdb").write_text("")
    return lib


def write_config(path: Path, lib: Path, urls: dict | None = None, shards: int = 2,
                 accessions=(AFDB_OK, AFDB_MISSING), **overrides) -> Path:
    """A tiny screen config: the demo map, ``lib``/*, AFDB accessions from the fixture server."""
    config = {
        "map": {"path": str(DEMO / "density2.mrc"), "threshold": 0.886, "resolution": 4.0},
        "library": {"name": "tiny", "local": [f"{lib}/*.pdb", f"{lib}/*.pdb.gz"],
                    "afdb": {"accessions": list(accessions)}},
        "shards": {"count": shards},
        "fit": dict(TINY_FIT),
        "report": {"enabled": True, "top": 5},
    }
    if urls:
        config["urls"] = {k: v for k, v in urls.items() if k in wh.URL_KEYS}
    for key, value in overrides.items():
        config[key] = {**config.get(key, {}), **value}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --- unit tests of difffit_screen.workflow_helpers -----------------------------------------------

def _rows(weights: dict[str, float]) -> list[dict]:
    return [{"candidate": c, "key": f"{c}\t", "sha256": "", "weight": w}
            for c, w in weights.items()]


def test_assign_buckets_balanced_deterministic_and_sticky():
    weights = {f"c{i:02d}": float(100 + 37 * (i % 7)) for i in range(40)}
    first = wh.assign_buckets(_rows(weights), 4)
    assert first == wh.assign_buckets(list(reversed(_rows(weights))), 4)
    loads = [sum(w for c, w in weights.items() if first[c] == b) for b in range(4)]
    assert max(loads) - min(loads) <= max(weights.values())
    # a new candidate joins the lightest bucket, and no existing candidate moves
    weights2 = {**weights, "new": 250.0}
    second = wh.assign_buckets(_rows(weights2), 4, previous=first)
    assert {c: second[c] for c in first} == first
    assert second["new"] == min(range(4), key=lambda b: (loads[b], b))
    # another shard count: previous assignments that do not fit are re-placed
    assert set(wh.assign_buckets(_rows(weights), 2, previous=first).values()) == {0, 1}


def _manifest(path: Path, names: list[str]) -> Path:
    table = pa.table({"candidate": names, "path": [f"/x/{n}.pdb" for n in names],
                      "sha256": [f"sha-{n}" for n in names],
                      "n_bytes": [1000 + 10 * i for i in range(len(names))]})
    pq.write_table(table, path)
    return path


def test_split_library_only_changes_the_bucket_of_a_new_candidate(tmp_path):
    names = [f"cand{i}" for i in range(10)]
    manifest = _manifest(tmp_path / "manifest.parquet", names)
    outs = [tmp_path / "buckets" / f"{i}-of-3.tsv" for i in (1, 2, 3)]
    counts = wh.split_library(manifest, outs)
    assert sum(counts) == 10 and max(counts) - min(counts) <= 1
    before = [p.read_bytes() for p in outs]
    assert wh.split_library(manifest, outs) == counts
    assert [p.read_bytes() for p in outs] == before  # byte-identical: Snakemake sees no change
    _manifest(manifest, [*names, "added"])
    wh.split_library(manifest, outs)
    after = [p.read_bytes() for p in outs]
    changed = [i for i in range(3) if after[i] != before[i]]
    assert len(changed) == 1 and b"added\tsha-added" in after[changed[0]]
    # the bucket manifest has exactly the rows of its bucket
    sub = tmp_path / "sub.parquet"
    n = wh.bucket_manifest(manifest, outs[changed[0]], sub)
    assert n == len(after[changed[0]].splitlines())
    assert "added" in pq.read_table(sub).column("candidate").to_pylist()


def test_config_helpers(tmp_path):
    (tmp_path / "a.pdb").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.cif.gz").write_text("x")
    config = {"map": {"path": "m.mrc"},
              "library": {"local": [f"{tmp_path}/**/*.pdb", f"{tmp_path}/**/*.cif.gz",
                                    f"{tmp_path}/missing.pdb"]},
              "shards": {"candidates_per_shard": 2},
              "fit": {"positions": 3, "rotations": None, "atoms": "ca", "seed": 1,
                      "device": "auto", "deepen_hits": 0, "extra": "--models 0"}}
    wh.check_config(config)
    spec = wh.library_spec(config)
    assert spec["local"] == sorted([str(tmp_path / "a.pdb"), str(tmp_path / "sub" / "b.cif.gz"),
                                    str(tmp_path / "missing.pdb")])
    assert wh.n_shards(config) == 2  # 3 files / 2 per shard
    assert "proteome_tar" not in spec["afdb"]  # unset: the spec (and its digest) is unchanged
    bulk = {**config, "library": {**config["library"], "afdb": {"proteome_tar": "UP1_2_X_v6"}}}
    wh.check_config(bulk)
    assert wh.library_spec(bulk)["afdb"]["proteome_tar"] == "UP1_2_X_v6"
    assert wh.fit_options(config) == "--positions 3 --atoms ca --seed 1 --deepen-hits 0 --models 0"
    # --device follows the job: cuda for a cluster job given a GPU, fit.device otherwise
    assert wh.job_device(config, 1, on_cluster=True) == "cuda"
    assert wh.job_device(config, 1, on_cluster=False) == "auto"
    assert wh.job_device(config, 0, on_cluster=True) == "auto"
    assert wh.job_device({"fit": {"device": "cpu"}}, 1, on_cluster=True) == "cpu"
    assert wh.library_name(config).startswith("lib-")
    assert wh.library_dir({**config, "library": {**config["library"], "name": "x"}}) == \
        "resources/library/x"
    assert wh.emdb_id({"map": {"emdb": "emd_1234"}}) == "EMD-1234"
    with pytest.raises(wh.ConfigError, match="'map'"):
        wh.check_config({"map": {}, "library": config["library"]})
    with pytest.raises(wh.ConfigError, match="'library'"):
        wh.check_config({"map": {"path": "m.mrc"}, "library": {"local": []}})
    # an AFDB per-proteome archive alone is a library; compositing alone needs none
    wh.check_config({"map": {"path": "m.mrc"}, "library": {"afdb": {"proteome_tar": "UP1_2_X"}}})
    wh.check_config({"map": {"path": "m.mrc"}, "library": {"local": []},
                     "composite": {"enabled": True}})


def test_write_top_hits(tmp_path):
    from difffit_screen.tables import RANKING_SCHEMA, table_from_rows, write_table

    matrix = [0.0, -1.0, 0.0, 342.524, 1.0, 0.0, 0.0, 206.885, 0.0, 0.0, 1.0, -0.125]
    rows = [{"rank": i + 1, "candidate": f"c{i}", "cluster_rank": 1, "hits": 3,
             "score": 1.0 - i / 10, "fit_ok": True, "matrix": matrix} for i in range(5)]
    write_table(table_from_rows(rows, RANKING_SCHEMA), tmp_path / "ranking.parquet")
    assert wh.write_top_hits(tmp_path / "ranking.parquet", tmp_path / "top.tsv", n=3) == 3
    lines = (tmp_path / "top.tsv").read_text().splitlines()
    assert lines[0].startswith("rank\tcandidate\tscore") and lines[1].startswith("1\tc0\t1")
    pose = dict(zip(lines[0].split("\t"), lines[1].split("\t"), strict=True))["matrix"]
    assert [float(v) for v in pose.split(",")] == matrix  # the pose, [R | t] row-major
    assert wh.write_ranking_html(tmp_path / "ranking.parquet", tmp_path / "r.html") == 5
    assert "<th>matrix</th>" in (tmp_path / "r.html").read_text()
    assert "<td>0,-1,0,342.524,1,0,0,206.885,0,0,1,-0.125</td>" in (tmp_path / "r.html").read_text()
    # what `make demo` prints: names and organisms, and where the report is
    named = [{**r, "name": "PARKIN CO-REGULATED PROTEIN", "organism": "TETRAHYMENA THERMOPHILA "
              "(STRAIN SB210)", "qvalue": 8.9e-6} for r in rows]
    write_table(table_from_rows(named, RANKING_SCHEMA), tmp_path / "named.parquet")
    proc = subprocess.run([sys.executable, "-m", "difffit_screen.workflow_helpers", "print-top",
                           "--ranking", str(tmp_path / "named.parquet"), "-n", "2", "--report",
                           "results/report/index.html"], cwd=tmp_path, text=True,
                          capture_output=True, check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["rank", "candidate", "name", "organism", "score", "qvalue",
                                "hits"]
    assert lines[1].split()[:4] == ["1", "c0", "PARKIN", "CO-REGULATED"]
    assert "TETRAHYMENA THERMOPHILA (STRAIN…" in lines[1] and "8.9e-06" in lines[1]
    assert lines[3:] == ["(2 of 5 candidates)",
                         f"report: {tmp_path / 'results' / 'report' / 'index.html'}"]


# --- lint, validation, profiles (no jobs run) -------------------------------------------------

def test_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--configfile",
                           "config/demo.yaml"], cwd=REPO, text=True,
                          env=snakemake_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, proc.stdout
    assert "Congratulations" in proc.stdout


@pytest.mark.parametrize(("override", "named"), [
    ({"shards": {"count": 0}}, "count"),
    ({"fit": {"device": "tpu"}}, "device"),
    ({"fit": {"positons": 4}}, "positons"),
    ({"map": {"path": None}}, "'map'"),
])
def test_bad_config_stops_before_any_job(tmp_path, override, named):
    lib = make_library(tmp_path, decoys=(), bad=False)
    cfg = write_config(tmp_path / "config.yaml", lib, accessions=())
    config = yaml.safe_load(cfg.read_text())
    for key, value in override.items():
        config[key].update(value)
    cfg.write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path, cfg, check=False)
    assert proc.returncode != 0
    assert named in proc.stdout, proc.stdout[-3000:]
    assert not (tmp_path / "resources").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("profile", ["local", "slurm"])
def test_profiles_dry_run(tmp_path, profile):
    lib = make_library(tmp_path)
    cfg = write_config(tmp_path / "config.yaml", lib, urls={"afdb_api": "http://127.0.0.1:9"})
    proc = run_snakemake(tmp_path, cfg, "-n", "--profile", str(REPO / "profiles" / profile),
                         workflow_profile=None)
    out = proc.stdout
    assert "workflow specific profile" in out and "workflow/profiles/default" in out
    n = 8 if profile == "slurm" else 2  # the slurm profile sets set-scatter shard: 8
    assert len(jobs_run(out, "fit_shard")) == n, out[-3000:]
    assert "gpu=1" in out
    assert "cpus_per_gpu=8" in out and "runtime=240" in out  # the workflow profile's
    assert "slurm_partition" not in out  # partitions.yaml picks them at submission
    assert not (tmp_path / "results").exists()


# --- real runs ----------------------------------------------------------------------------------

def test_emdb_map_is_fetched_and_prepared(tmp_path, fixture_http):
    lib = make_library(tmp_path, decoys=(), bad=False)
    cfg = write_config(tmp_path / "config.yaml", lib, urls=fixture_http.urls(), accessions=(),
                       map={"path": None, "emdb": "EMD-99999", "threshold": None,
                            "resolution": None})
    run_snakemake(tmp_path, cfg, "results/map/prepared.npz")
    meta = (tmp_path / "resources" / "maps" / "EMD-99999" / "meta.json").read_text()
    assert '"contour"' in meta and '"resolution"' in meta
    assert (tmp_path / "results" / "map" / "prepared.npz").stat().st_size > 0
    assert "threshold" in (tmp_path / "logs" / "prepare_map.log").read_text()
    assert fixture_http.count("/emdb/") >= 2


def _mtimes(workdir: Path, pattern: str) -> dict[str, float]:
    return {str(p.relative_to(workdir)): p.stat().st_mtime_ns for p in workdir.glob(pattern)}


@pytest.mark.slow
def test_screen_end_to_end_then_nothing_to_do_then_only_new_candidates(tmp_path, fixture_http):
    lib = make_library(tmp_path)
    cfg = write_config(tmp_path / "config.yaml", lib, urls=fixture_http.urls())

    t0 = time.time()
    first = run_snakemake(tmp_path, cfg)
    print(f"first run {time.time() - t0:.1f} s")
    assert sorted(jobs_run(first.stdout, "fit_shard")) == ["scatteritem=1-of-2",
                                                           "scatteritem=2-of-2"]
    results = tmp_path / "results"
    ranking = pq.read_table(results / "ranking.parquet").to_pandas()
    fitted = set(ranking["candidate"])
    assert {*PACRG, *DECOYS} <= fitted
    assert any(c.startswith(AFDB_OK) for c in fitted)
    assert list(ranking["rank"]) == list(range(1, len(ranking) + 1))
    failures = pq.read_table(results / "failures.parquet").to_pandas()
    reasons = dict(zip(failures["candidate"], failures["stage"], strict=False))
    assert any("broken" in c for c in reasons), failures
    assert any(AFDB_MISSING in c for c in failures["candidate"]), failures
    assert len(pq.read_table(results / "fits.parquet")) >= len(ranking)
    assert (results / "report" / "index.html").is_file()
    assert (results / "top_hits.tsv").read_text().count("\n") == 6
    for name in ("ranking", "fits", "failures"):  # polars and duckdb read them too, if installed
        path = results / f"{name}.parquet"
        n = pq.read_metadata(path).num_rows
        if importlib.util.find_spec("polars"):
            import polars

            assert polars.read_parquet(path).height == n
        if importlib.util.find_spec("duckdb"):
            import duckdb

            q = f"select count(*) from read_parquet('{path}')"
            assert duckdb.connect().execute(q).fetchone()[0] == n

    again = run_snakemake(tmp_path, cfg)
    assert "Nothing to be done" in again.stdout, again.stdout[-3000:]

    # add one candidate: only the shard bucket that receives it is packed and fitted again
    before = _mtimes(tmp_path, "results/shards/*/fits.parquet")
    shutil.copy(DEMO / "decoys" / "A0A1D1VUA9.pdb.gz", lib)
    t0 = time.time()
    third = run_snakemake(tmp_path, cfg)
    print(f"run after adding a candidate {time.time() - t0:.1f} s")
    refitted = jobs_run(third.stdout, "fit_shard")
    assert len(refitted) == 1, third.stdout[-4000:]
    assert len(jobs_run(third.stdout, "pack_shard")) == 1
    after = _mtimes(tmp_path, "results/shards/*/fits.parquet")
    changed = [k for k in before if before[k] != after[k]]
    assert changed == [f"results/shards/{refitted[0].split('=')[1]}/fits.parquet"]
    ranking = pq.read_table(results / "ranking.parquet").to_pandas()
    assert "A0A1D1VUA9" in set(ranking["candidate"])


FAIL_ONCE = """#!/bin/bash
# difffit-screen wrapper of the test: the first fit of shard {shard} dies mid-way, after
# writing a partial output, as a job killed on its node would.
if [[ "$1" == "fit" && "$*" == *"{shard}"* && ! -e "{marker}" ]]; then
    touch "{marker}"
    out=$(printf '%s\\n' "$@" | grep -A1 -- '--out' | tail -1)
    mkdir -p "$out" && echo partial > "$out/fits.parquet"
    echo "killed mid-way (injected by the test)" >&2
    exit 137
fi
exec "{real}" "$@"
"""


@pytest.mark.slow
def test_killed_shard_is_recomputed_alone(tmp_path):
    lib = make_library(tmp_path, bad=False)
    cfg = write_config(tmp_path / "config.yaml", lib, accessions=(), report={"enabled": False})
    fake = tmp_path / "bin"
    fake.mkdir()
    wrapper = fake / "difffit-screen"
    wrapper.write_text(FAIL_ONCE.format(shard="2-of-2", marker=tmp_path / "killed",
                                        real=shutil.which("difffit-screen",
                                                          path=snakemake_env()["PATH"])))
    wrapper.chmod(0o755)
    env = snakemake_env(extra_path=fake)

    first = run_snakemake(tmp_path, cfg, "--keep-going", check=False, env=env)
    assert first.returncode != 0
    assert (tmp_path / "killed").exists()
    assert sorted(jobs_run(first.stdout, "fit_shard")) == ["scatteritem=1-of-2",
                                                           "scatteritem=2-of-2"]
    assert not (tmp_path / "results" / "shards" / "2-of-2" / "fits.parquet").exists()
    assert not (tmp_path / "results" / "ranking.parquet").exists()
    done = _mtimes(tmp_path, "results/shards/*/fits.parquet")
    assert sorted(done) == ["results/shards/1-of-2/fits.parquet"]

    second = run_snakemake(tmp_path, cfg, env=env)
    assert jobs_run(second.stdout, "fit_shard") == ["scatteritem=2-of-2"]
    assert jobs_run(second.stdout, "pack_shard") == []
    assert {k: v for k, v in _mtimes(tmp_path, "results/shards/*/fits.parquet").items()
            if k in done} == done
    ranking = pq.read_table(tmp_path / "results" / "ranking.parquet").to_pandas()
    assert {*PACRG, *DECOYS} == set(ranking["candidate"])


@pytest.mark.slow
def test_failed_shard_is_retried(tmp_path):
    lib = make_library(tmp_path, decoys=DECOYS[:1], bad=False)
    cfg = write_config(tmp_path / "config.yaml", lib, accessions=(), shards=1,
                       report={"enabled": False})
    fake = tmp_path / "bin"
    fake.mkdir()
    wrapper = fake / "difffit-screen"
    wrapper.write_text(FAIL_ONCE.format(shard="1-of-1", marker=tmp_path / "killed",
                                        real=shutil.which("difffit-screen",
                                                          path=snakemake_env()["PATH"])))
    wrapper.chmod(0o755)
    proc = run_snakemake(tmp_path, cfg, "--retries", "1", env=snakemake_env(extra_path=fake))
    assert (tmp_path / "killed").exists()
    assert jobs_run(proc.stdout, "fit_shard").count("scatteritem=1-of-1") == 2
    assert (tmp_path / "results" / "ranking.parquet").is_file()


@pytest.mark.slow
def test_demo_config_ranks_the_pacrg_paralogs_first(tmp_path):
    """config/demo.yaml as shipped, with the local profile: the acceptance test of the demo."""
    (tmp_path / "tests").symlink_to(REPO / "tests")  # the demo's paths are relative
    t0 = time.time()
    run_snakemake(tmp_path, REPO / "config" / "demo.yaml", "--profile",
                  str(REPO / "profiles" / "local"))
    print(f"demo screen {time.time() - t0:.1f} s")
    ranking = pq.read_table(tmp_path / "results" / "ranking.parquet").to_pandas()
    assert len(ranking) == 33
    assert set(ranking["candidate"].head(2)) == set(PACRG), ranking.head(5)
    # the only discoveries, and confident ones (about 9 robust spreads above the decoys)
    assert (ranking["qvalue"].head(2) < 1e-3).all()
    assert (ranking["qvalue"].iloc[2:] > 0.05).all()
    assert (tmp_path / "results" / "report" / "index.html").is_file()
    # named from their AlphaFold headers: ranking, top_hits.tsv, report, Snakemake report items
    for row in ranking.head(2).itertuples():
        assert row.name.lower() == "parkin co-regulated protein", row
        assert row.organism.lower().startswith("tetrahymena thermophila") and row.taxid == 312017
        assert row.url == f"https://alphafold.ebi.ac.uk/entry/{row.candidate.split('_')[0]}"
    top = (tmp_path / "results" / "top_hits.tsv").read_text().lower()
    assert top.count("parkin co-regulated protein") == 2
    page = (tmp_path / "results" / "report" / "index.html").read_text().lower()
    assert "parkin co-regulated protein" in page and "alphafold.ebi.ac.uk/entry/i7mlv6" in page
    assert len(list((tmp_path / "results" / "report" / "hits").glob("rank*.png"))) == 10


# --- config without leaks, one-line errors ------------------------------------------------------

def test_shipped_config_is_neutral_and_the_demo_lives_in_demo_yaml():
    shipped = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert shipped["map"]["path"] is None and shipped["map"]["emdb"] is None
    assert shipped["map"]["threshold"] is None and shipped["map"]["resolution"] is None
    assert shipped["library"]["local"] == [] and shipped["library"]["name"] is None
    assert "demo_library" not in (REPO / "config" / "config.yaml").read_text()
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    assert demo["map"]["path"].endswith("density2.mrc") and demo["library"]["name"] == "demo"


def test_config_with_only_map_emdb_is_accepted_without_demo_values(tmp_path):
    """Run in a folder holding the shipped config/config.yaml, as from the repository root."""
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    lib = make_library(tmp_path, decoys=(), bad=False)
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump({"map": {"emdb": "EMD-99999"},
                                   "library": {"local": [f"{lib}/*.pdb"]}}))
    proc = run_snakemake(tmp_path, cfg, "-n", "--printshellcmds")
    assert "fetch_map" in proc.stdout and "--emdb EMD-99999" in proc.stdout
    assert "--threshold" not in proc.stdout and "tests/data/demo_library" not in proc.stdout


def test_missing_map_names_the_key_in_one_line(tmp_path):
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    proc = run_snakemake(tmp_path, None, "-n", check=False)  # the shipped template alone
    assert proc.returncode != 0
    assert "config key 'map': give exactly one of 'map.path'" in proc.stdout, proc.stdout


def test_library_glob_that_matches_nothing_is_refused_at_planning_time(tmp_path):
    """An empty `library.local` glob stops `init` and the dry run with one line, before any
    job (no empty shards packed, no fit job failing)."""
    pattern = f"{tmp_path}/models/*.pdb"
    init = subprocess.run([sys.executable, "-m", "difffit_screen.cli", "init", "s", "--map",
                           str(DEMO / "density2.mrc"), "--library", pattern], cwd=tmp_path,
                          text=True, capture_output=True)
    assert init.returncode == 2 and not (tmp_path / "s").exists()
    assert init.stderr.strip().splitlines() == [
        f"difffit-screen init: error: {pattern}: --library matches no file"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"map": {"path": str(DEMO / "density2.mrc")},
                                   "library": {"local": [pattern]}}))
    proc = run_snakemake(tmp_path, cfg, "-n", check=False)
    assert proc.returncode != 0
    assert f"config key 'library.local': {pattern!r} matches no file" in proc.stdout, proc.stdout
    assert "pack_shard" not in proc.stdout and len(proc.stdout.strip().splitlines()) <= 8


@pytest.mark.parametrize(("config", "line"), [
    ({"mapp": {"path": "m.mrc"}}, "config key '(top level)': Additional properties are not "
                                  "allowed ('mapp' was unexpected)"),
    ({"map": {"path": "m.mrc"}, "fit": {"device": "tpu"}}, "config key 'fit.device': 'tpu' is "
                                                           "not one of"),
])
def test_schema_error_is_one_line_without_the_schema(tmp_path, config, line):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path, cfg, "-n", check=False)
    assert proc.returncode != 0
    assert line in proc.stdout, proc.stdout
    assert "Failed validating" not in proc.stdout and "'description'" not in proc.stdout
    assert len(proc.stdout.strip().splitlines()) <= 8, proc.stdout


@pytest.mark.slow
def test_init_local_profile_paths_with_spaces_and_the_snakemake_report(tmp_path):
    """`difffit-screen init` then `snakemake --profile local`, every path with a space in it;
    then `snakemake --report report.zip` carries the ranking table and the HTML report."""
    maps = tmp_path / "maps dir"
    maps.mkdir()
    shutil.copy(DEMO / "density2.mrc", maps / "density 2.mrc")
    lib = make_library(tmp_path / "my lib", decoys=DECOYS[:1], bad=False)
    init = [sys.executable, "-m", "difffit_screen.cli", "init", "my screen", "--map",
            "maps dir/density 2.mrc", "--threshold", "0.886", "--resolution", "4",
            "--library", f"{lib.relative_to(tmp_path)}/*.pdb*", "--shards", "2"]
    proc = subprocess.run(init, cwd=tmp_path, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    screen = tmp_path / "my screen"
    config_path = screen / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    assert config["map"]["path"] == str(maps / "density 2.mrc")
    config["fit"].update({k: v for k, v in TINY_FIT.items() if k != "device"})
    config["fit"]["extra"] = "--refine-top 1 --refine-iterations 10"  # models written
    config_path.write_text(yaml.safe_dump(config))

    env = snakemake_env()
    run = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "local", "--cores",
                          "2", "--set-threads", "fit_shard=1"], cwd=screen, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    assert run.returncode == 0, run.stdout[-6000:]
    assert "'" + str(maps / "density 2.mrc") + "'" in run.stdout  # quoted in the command
    results = screen / "results"
    ranking = pq.read_table(results / "ranking.parquet").to_pandas()
    assert set(ranking["candidate"].head(2)) == set(PACRG)
    # declared outputs: the shards' models, the aggregated run record, the report folder
    assert sorted(p.name for p in (results / "shards" / "1-of-2" / "models").iterdir())
    assert "device" in json.loads((results / "run.json").read_text())
    assert (results / "report" / "index.html").is_file()
    assert sorted(p.name for p in (results / "benchmarks" / "fit_shard").iterdir()) == \
        ["1-of-2.tsv", "2-of-2.tsv"]
    assert "<table>" in (results / "ranking.html").read_text()

    rep = subprocess.run([sys.executable, "-m", "snakemake", "--report", "report.zip"],
                         cwd=screen, env=env, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=300)
    assert rep.returncode == 0, rep.stdout[-3000:]
    with zipfile.ZipFile(screen / "report.zip") as z:
        names = z.namelist()
        table = next(n for n in names if n.endswith("/ranking.html"))
        assert "<td>I7M" in z.read(table).decode()
    assert any(n.endswith("/index.html") and "report/data" in n for n in names), names
    assert any(n.endswith(".cxc") for n in names) and any(n.endswith(".cif") for n in names)


def test_retry_guard_skips_a_retry_after_exit_status_2_only(tmp_path):
    """The guard of the submitted rules: exit 2 is recorded and a later attempt fails at once
    (without running the command); another failure is retried; attempt 1 starts afresh."""
    from difffit_screen.retry_guard import marker_path

    log, ran = tmp_path / "job.log", tmp_path / "ran"

    def guard(status: int, attempt: int) -> int:
        code = (f"open({str(ran)!r}, 'a').write('x'); import sys; "
                f"print('bad option', file=sys.stderr); sys.exit({status})")
        with open(log, "w") as out:
            return subprocess.run(
                [sys.executable, "-m", "difffit_screen.workflow_helpers", "guard", "--attempt",
                 str(attempt), "--log", str(log), "--", sys.executable, "-c", code],
                stdout=out, stderr=subprocess.STDOUT).returncode

    assert guard(2, 1) == 2 and marker_path(log).read_text() == "bad option\n"
    assert guard(0, 2) == 2 and ran.read_text() == "x"  # not run again
    assert "not retried (attempt 2)" in log.read_text() and "bad option" in log.read_text()
    assert guard(0, 1) == 0 and ran.read_text() == "xx"  # a new run: attempt 1 runs
    assert not marker_path(log).exists()
    assert guard(1, 1) == 1 and not marker_path(log).exists()  # e.g. out of memory
    assert guard(0, 2) == 0 and ran.read_text() == "xxxx"  # retried
